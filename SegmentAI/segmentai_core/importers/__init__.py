"""Importers of models trained elsewhere: nnU-Net v2 result folders and MONAI bundles.

Each importer turns a foreign folder into an ordinary SegmentAI model package (manifest +
checksummed safetensors weights), so the registry, ``segmentai segment`` and the Slicer module
treat it like any other model. Neither ``nnunetv2`` nor MONAI's bundle runner is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..errors import ModelError

__all__ = ["detect_format", "convert_model"]


def detect_format(folder: Union[str, Path]) -> Optional[str]:
    """``"segmentai"``, ``"nnunet-v2"``, ``"monai-bundle"`` or None for what ``folder`` holds."""
    from ..models.manifest import MANIFEST_NAME
    from .monai_bundle import is_monai_bundle
    from .nnunet import is_nnunet_folder

    folder = Path(folder)
    if (folder / MANIFEST_NAME).is_file():
        return "segmentai"
    if is_nnunet_folder(folder):
        return "nnunet-v2"
    if is_monai_bundle(folder):
        return "monai-bundle"
    return None


def convert_model(source: Union[str, Path], destination: Union[str, Path], model_id: Optional[str] = None):
    """Write a SegmentAI package for the nnU-Net folder or MONAI bundle ``source`` into ``destination``."""
    source = Path(source).expanduser()
    if not source.is_dir():
        raise ModelError(f"model folder {source} does not exist")
    kind = detect_format(source)
    if kind == "nnunet-v2":
        from .nnunet import convert_nnunet

        return convert_nnunet(source, destination, model_id=model_id)
    if kind == "monai-bundle":
        from .monai_bundle import convert_monai_bundle

        return convert_monai_bundle(source, destination, model_id=model_id)
    raise ModelError(
        f"{source} is not a model SegmentAI can import: expected manifest.json, an nnU-Net v2 folder "
        "(dataset.json, plans.json, fold_*/checkpoint_final.pth) or a MONAI bundle (configs/metadata.json)"
    )
