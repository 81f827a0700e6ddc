"""The Python packages SegmentAI needs inside Slicer, checked cheaply and installed on request.

torch comes from the PyTorch extension (its installer picks the build for the machine's GPU); the
rest from the module's ``Resources/requirements.txt`` through Slicer's pip helpers. Nothing here
runs at import time.
"""

from __future__ import annotations

import importlib.util
from typing import List

__all__ = ["DEPENDENCIES", "IMPORTER_DEPENDENCIES", "install_dependencies", "install_packages",
           "missing_dependencies", "missing_for_importer"]

# Import name → pip name of what the core needs; torch comes from the PyTorch extension.
DEPENDENCIES = {"torch": "torch", "monai": "monai", "SimpleITK": "SimpleITK", "skimage": "scikit-image",
                "scipy": "scipy", "safetensors": "safetensors", "jsonschema": "jsonschema", "einops": "einops"}


# What a catalog model's importer needs beyond that (import name → pip requirement), asked for at its Install.
IMPORTER_DEPENDENCIES = {"nnunet": {"dynamic_network_architectures": "dynamic-network-architectures>=0.4,<0.5"}}


def missing_for_importer(importer: str) -> List[str]:
    """pip requirements a catalog model imported by ``importer`` (``nnunet``, ``monai_bundle``) still lacks."""
    needs = IMPORTER_DEPENDENCIES.get(importer, {})
    return [requirement for module, requirement in needs.items() if importlib.util.find_spec(module) is None]


def install_packages(requirements: List[str]) -> None:
    """Install ``requirements`` (pip requirement strings) with Slicer's pip helper."""
    import slicer.util

    slicer.util.pip_install(list(requirements))


def missing_dependencies() -> List[str]:
    """pip names of the packages that cannot be imported yet."""
    return [pip_name for module, pip_name in DEPENDENCIES.items() if importlib.util.find_spec(module) is None]


def install_dependencies(requirements: str) -> None:
    """Install torch (PyTorch extension), then the packages of ``requirements`` (Slicer's pip helpers)."""
    import slicer.util

    if importlib.util.find_spec("torch") is None:
        try:
            import PyTorchUtils
        except ImportError as error:
            raise RuntimeError("Install the PyTorch extension from the Extensions Manager first.") from error
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.2") \
                is None:
            raise RuntimeError("PyTorch could not be installed.")
    import slicer

    packaging = getattr(slicer, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer >= 5.11
        packaging.pip_ensure(packaging.load_requirements(requirements), requester="SegmentAI")
    else:
        slicer.util.pip_install(["-r", requirements])
