"""The manifest extension blocks SegmentAI reads: ``x-interactive`` and ``x-nnunet``, one dataclass each.

Both blocks are validated by the manifest schema (``$defs/x-interactive``, ``$defs/x-nnunet``);
these classes are their typed form and hold the one set of defaults for what a block leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Union

__all__ = ["INTERACTIVE_EXTENSION", "NNUNET_EXTENSION", "InteractiveSettings", "NNUNetSettings"]

INTERACTIVE_EXTENSION = "x-interactive"
NNUNET_EXTENSION = "x-nnunet"


def _known(cls, block: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in (block or {}).items() if k in names}


@dataclass(frozen=True)
class InteractiveSettings:
    """How an interactive model (image, previous mask, positive and negative guidance) is run.

    Defaults are those of the shipped ``interactive-unet`` (the working grid's smallest extent,
    72 mm, is the context the model was trained with), except ``test_time_flips``: a model that does
    not ask for mirrored averaging gets none (each flip costs one more forward pass).
    """

    max_size: int = 96
    margin_mm: float = 12.0
    min_extent_mm: float = 72.0
    max_zoom: float = 2.0
    guidance_sigma_voxels: float = 1.5
    guidance: str = "gaussian"
    test_time_flips: int = 0
    experimental: bool = False

    @classmethod
    def from_block(cls, block: Optional[Mapping[str, Any]]) -> "InteractiveSettings":
        """From a manifest's ``x-interactive`` block (None or {} for all defaults)."""
        values = _known(cls, block)
        casts = {"max_size": int, "margin_mm": float, "min_extent_mm": float, "max_zoom": float,
                 "guidance_sigma_voxels": float, "guidance": str, "test_time_flips": int, "experimental": bool}
        return cls(**{k: casts[k](v) for k, v in values.items()})


@dataclass(frozen=True)
class NNUNetSettings:
    """nnU-Net's pipeline of an imported model (axis order, spacing, normalisation, resampling, windows).

    Axis-dependent items (``spacing``, ``patch_size``, ``mirror_axes``) are in the model's axis order:
    the array order ``(k, j, i)`` permuted by ``transpose_forward``.
    """

    transpose_forward: List[int]
    transpose_backward: List[int]
    spacing: List[float]
    patch_size: List[int]
    normalization: List[Dict[str, Any]]
    resampling_data: Dict[str, Any]
    resampling_probabilities: Dict[str, Any]
    num_heads: int
    mirror_axes: List[int] = field(default_factory=list)
    step_size: float = 0.5
    batch_size: Optional[int] = None
    """Windows per forward pass; None: chosen from the patch (see nnunet_pipeline)."""
    in_channels: int = 1
    regions_class_order: Optional[List[int]] = None
    postprocessing: List[Dict[str, Any]] = field(default_factory=list)
    source_format: str = "nnunet-v2"
    configuration: str = ""
    trainer: str = ""
    image_reader: str = ""
    files: Dict[str, str] = field(default_factory=dict)
    finetuned_from_fold: Optional[str] = None
    resample_mm: Optional[float] = None
    """TotalSegmentator's round trip around nnU-Net at this isotropic spacing (see
    :mod:`~segmentai_core.inference.resample_first`); None: nnU-Net alone, as ``nnUNetPredictor``."""

    @classmethod
    def of(cls, block: Union["NNUNetSettings", Mapping[str, Any]]) -> "NNUNetSettings":
        """From a manifest's ``x-nnunet`` block (a settings object is returned as it is)."""
        if isinstance(block, NNUNetSettings):
            return block
        values = _known(cls, block)
        return cls(**{
            **values,
            "transpose_forward": [int(a) for a in block["transpose_forward"]],
            "transpose_backward": [int(a) for a in block["transpose_backward"]],
            "spacing": [float(s) for s in block["spacing"]],
            "patch_size": [int(p) for p in block["patch_size"]],
            "num_heads": int(block["num_heads"]),
            "mirror_axes": [int(a) for a in block.get("mirror_axes") or []],
            "step_size": float(block.get("step_size", 0.5)),
            "batch_size": int(block["batch_size"]) if block.get("batch_size") else None,
            "in_channels": int(block.get("in_channels", 1)),
            "postprocessing": list(block.get("postprocessing") or []),
            "resample_mm": float(block["resample_mm"]) if block.get("resample_mm") else None,
        })
