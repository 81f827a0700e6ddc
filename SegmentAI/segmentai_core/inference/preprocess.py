"""Bring any input volume into the model's canonical space: the *same* code path for training
and inference, so the network never sees data prepared differently from what it learnt on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..geometry import Geometry
from ..volume import Volume
from .canonical import canonical_geometry, resample_to
from .normalization import normalize

__all__ = ["PreparedInput", "prepare_input", "prepare_label"]


@dataclass
class PreparedInput:
    """Normalised float32 image on the canonical grid, plus both grids for the way back."""

    array: np.ndarray
    canonical: Geometry
    original: Geometry


def prepare_input(volume: Volume, preprocessing: Mapping) -> PreparedInput:
    """Reorient and resample to ``orientation``/``target_spacing``, then normalise.

    ``preprocessing`` is the manifest's ``preprocessing`` object. Voxels outside the input's
    field of view take the input's minimum (air/background), not zero, before normalisation.
    """
    target = canonical_geometry(volume.geometry, preprocessing["orientation"], preprocessing["target_spacing"])
    background = float(np.min(volume.array)) if volume.array.size else 0.0
    resampled = resample_to(volume, target, order=1, default_value=background)
    array = normalize(resampled.array, preprocessing.get("normalization", {"type": "none"}))
    return PreparedInput(array, target, volume.geometry)


def prepare_label(label: Volume, canonical: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling of a label map onto the canonical grid (for training)."""
    return resample_to(label, canonical, order=0, default_value=0).array
