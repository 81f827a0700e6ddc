"""Label-map postprocessing: keep the largest connected component, fill holes (SciPy)."""

from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy import ndimage

__all__ = ["keep_largest_component", "fill_holes", "bounding_box"]


def bounding_box(mask: np.ndarray, margin: int = 1):
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels, or None if empty."""
    objects = ndimage.find_objects(mask.astype(np.uint8, copy=False))
    if not objects or objects[0] is None:
        return None
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(objects[0], mask.shape))


def keep_largest_component(labelmap: np.ndarray, labels: Iterable[int]) -> np.ndarray:
    """For each label, drop every 26-connected component but the largest (in place; returned)."""
    structure = np.ones((3,) * labelmap.ndim, dtype=bool)
    for value in labels:
        box = bounding_box(labelmap == value)
        if box is None:
            continue
        region = labelmap[box]
        mask = region == value
        components, count = ndimage.label(mask, structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        region[mask & (components != int(np.argmax(sizes)))] = 0
    return labelmap


def fill_holes(labelmap: np.ndarray, labels: Iterable[int]) -> np.ndarray:
    """Fill enclosed background holes of each label, never taking other labels' voxels."""
    for value in labels:
        box = bounding_box(labelmap == value)
        if box is None:
            continue
        region = labelmap[box]
        filled = ndimage.binary_fill_holes(region == value)
        region[filled & (region == 0)] = value
    return labelmap
