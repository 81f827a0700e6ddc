"""TotalSegmentator's round trip around nnU-Net: closest RAS order, a fixed spacing first, labels back.

TotalSegmentator does not give nnU-Net the scan as stored. It reorders the voxel axes to the
closest RAS orientation (axis permutations and flips only, no interpolation), resamples that array
linearly to one isotropic spacing (3 mm for ``total --fast``, 1.5 mm for ``total``: its task's
``resample``) with the values cut to integers, lets nnU-Net segment that, and brings the label map
back to the scan's voxels by nearest neighbour before undoing the reordering. nnU-Net's network is
not mirror-symmetric and its own resampling (cubic, to the plans' spacing) is not linear, so
predicting the stored array directly gives another answer: on TotalSegmentator's models SegmentAI
does the same round trip (the manifest's ``x-nnunet.resample_mm``, from the catalog) to match it.

Resampling is :func:`scipy.ndimage.zoom` (corner-aligned, edge values repeated), the function and
settings TotalSegmentator uses, so both tools see the same voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from ..geometry import Geometry, kji_to_ijk
from ..volume import Volume

__all__ = ["WorkingGrid", "to_working_grid"]


def _ras_reorder(geometry: Geometry) -> Tuple[Tuple[int, int, int], Tuple[bool, bool, bool]]:
    """Array-axis permutation and flips that put a ``(k, j, i)`` array in closest-RAS ``(S, A, R)`` order.

    Returns ``(perm, flips)``: ``np.transpose(array, perm)`` puts the axes closest to S, A, R first to
    last, then axis ``n`` is reversed where ``flips[n]``.
    """
    ijk_for_axis, _ = geometry.axis_alignment()  # for LPS x, y, z: the closest ijk axis
    d = geometry.direction_matrix
    x, y, z = ijk_for_axis
    # RAS runs towards -x (right) and -y (anterior) of LPS, and +z (superior).
    flips = (bool(d[2, z] < 0), bool(d[1, y] > 0), bool(d[0, x] > 0))
    perm = (2 - z, 2 - y, 2 - x)  # ijk axis n is array axis 2 - n
    return perm, flips  # type: ignore[return-value]


@dataclass
class WorkingGrid:
    """The reordered, resampled volume nnU-Net runs on, and how to map its labels back."""

    volume: Volume
    perm: Tuple[int, int, int]
    flips: Tuple[bool, bool, bool]
    reordered_shape: Tuple[int, int, int]
    resampled: bool

    def labels_back(self, labels: np.ndarray) -> np.ndarray:
        """A label map on :attr:`volume`'s grid, on the input's voxels (array order k, j, i)."""
        from scipy import ndimage

        if self.resampled:
            zoom = np.asarray(self.reordered_shape, dtype=float) / np.asarray(labels.shape, dtype=float)
            labels = ndimage.zoom(labels, zoom, order=0, mode="nearest")
            if labels.shape != self.reordered_shape:  # zoom rounds the shape: never off by more than one
                raise RuntimeError(f"label map resampled to {labels.shape}, not {self.reordered_shape}")
        for axis, flip in enumerate(self.flips):
            if flip:
                labels = np.flip(labels, axis)
        return np.ascontiguousarray(np.transpose(labels, np.argsort(self.perm)))


def to_working_grid(volume: Volume, spacing_mm: float) -> WorkingGrid:
    """``volume`` in closest-RAS array order, linearly resampled to ``spacing_mm`` unless already there.

    The resampled values are truncated to integers, as TotalSegmentator stores them (int32). Only the
    spacing of the returned volume's geometry matters to nnU-Net; its origin is the input's and its
    direction the reordered axes' nearest RAS axes, so the working grid is roughly where the scan is.
    """
    from scipy import ndimage

    perm, flips = _ras_reorder(volume.geometry)
    array = np.transpose(volume.array, perm)
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
    spacing_kji = np.asarray(volume.geometry.spacing_kji, dtype=float)[list(perm)]
    reordered_shape = tuple(int(n) for n in array.shape)
    target = np.full(3, float(spacing_mm))
    # TotalSegmentator compares the header's (float32) spacing with the target exactly.
    resampled = not np.array_equal(spacing_kji.astype(np.float32), target.astype(np.float32))
    if resampled:
        zoom = spacing_kji / target
        array = ndimage.zoom(np.asarray(array, dtype=np.float64), zoom, order=1, mode="nearest").astype(np.int32)
        spacing_kji = target
    ras_direction_lps = np.diag([-1.0, -1.0, 1.0])  # columns: i → R, j → A, k → S, in LPS
    geometry = Geometry.create(array.shape, spacing=kji_to_ijk(spacing_kji), origin=volume.geometry.origin,
                               direction=ras_direction_lps)
    return WorkingGrid(Volume(np.ascontiguousarray(array), geometry), perm, flips, reordered_shape, resampled)
