"""Model packages: manifest + schema, safe weight loading, MONAI network factory and the registry.

Importing this package does not import torch or MONAI; they load when a network is built.
"""

from .manifest import MANIFEST_NAME, ModelManifest, load_manifest, manifest_schema, version_key
from .networks import ARCHITECTURES, build_network, size_divisor
from .package import ModelPackage, sha256_of_file, write_model_package
from .registry import DEFAULT_MODEL_ID, HOME_ENV, ModelRegistry, default_builtin_dir, default_user_dir

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MODEL_ID",
    "HOME_ENV",
    "MANIFEST_NAME",
    "ModelManifest",
    "ModelPackage",
    "ModelRegistry",
    "build_network",
    "default_builtin_dir",
    "default_user_dir",
    "load_manifest",
    "manifest_schema",
    "sha256_of_file",
    "size_divisor",
    "version_key",
    "write_model_package",
]
