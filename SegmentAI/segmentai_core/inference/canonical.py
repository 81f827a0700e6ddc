"""Resampling between a volume's own grid and a model's canonical grid.

The canonical grid is axis-aligned in the model's orientation (e.g. ``RAS``), has the model's
spacing, and covers the physical bounding box of the input. It depends only on where the
voxels are in space, so the same physical image stored with permuted or flipped axes (or an
oblique header) is presented to the network identically. When the input is axis-aligned and
already at the target spacing, canonical voxel centres coincide with input voxel centres and
the resampling is exact (a pure permutation/flip).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..geometry import Geometry, ijk_to_kji
from ..volume import Volume
from .linear_resample import above_axis_parallel, resample_linear_axis_parallel

__all__ = ["orientation_direction", "canonical_geometry", "resample_above", "resample_to", "resample_channels_to"]

_LETTER_TO_LPS_AXIS = {"L": (0, 1.0), "R": (0, -1.0), "P": (1, 1.0), "A": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def orientation_direction(code: str) -> np.ndarray:
    """Direction matrix (LPS columns) of the axis-aligned orientation ``code`` (e.g. ``"RAS"``)."""
    code = code.upper()
    if len(code) != 3 or sorted(_LETTER_TO_LPS_AXIS[c][0] for c in code) != [0, 1, 2]:
        raise ValueError(f"invalid orientation code {code!r}")
    direction = np.zeros((3, 3))
    for column, letter in enumerate(code):
        axis, sign = _LETTER_TO_LPS_AXIS[letter]
        direction[axis, column] = sign
    return direction


def canonical_geometry(source: Geometry, orientation: str, spacing: Sequence[float]) -> Geometry:
    """Axis-aligned grid in ``orientation`` at ``spacing`` covering ``source``'s voxel centres."""
    direction = orientation_direction(orientation)
    spacing_a = np.asarray(spacing, dtype=float)
    # Corner voxel centres expressed along the canonical axes.
    corners = source.corners_lps() @ direction
    low, high = corners.min(axis=0), corners.max(axis=0)
    # Round so that float noise (e.g. NIfTI's float32 geometry) cannot add a voxel.
    size_ijk = np.floor((high - low) / spacing_a + 1e-3).astype(int) + 1
    # Centre the grid on the bounding box so it is symmetric whatever the storage order.
    covered = (size_ijk - 1) * spacing_a
    start = low + ((high - low) - covered) / 2.0
    origin = direction @ start
    return Geometry.create(ijk_to_kji(int(s) for s in size_ijk), spacing_a, origin, direction)


def _sitk_resample(image, target: Geometry, interpolator, default_value: float):
    import SimpleITK as sitk

    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in target.size_ijk])
    resampler.SetOutputSpacing(target.spacing)
    resampler.SetOutputOrigin(target.origin)
    resampler.SetOutputDirection(tuple(target.direction_matrix.ravel()))
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(default_value)
    resampler.SetOutputPixelType(sitk.sitkFloat32 if interpolator != sitk.sitkNearestNeighbor else image.GetPixelID())
    return resampler.Execute(image)


def resample_to(volume: Volume, target: Geometry, *, order: int = 1, default_value: float = 0.0) -> Volume:
    """Resample ``volume`` onto ``target`` (order 0 = nearest for labels, 1 = linear, 3 = B-spline).

    Returns float32 for order ≥ 1 and the input dtype for order 0. Skips the work when the grids
    coincide; linear resampling between axis-parallel grids runs in :mod:`.linear_resample`.
    """
    import SimpleITK as sitk

    if volume.geometry.same_grid(target, tolerance_mm=1e-4):
        array = volume.array if order == 0 else volume.array.astype(np.float32, copy=False)
        return Volume(array, target)
    if order == 1:
        # Axis-parallel grids (the usual case): no full-resolution ITK copy of the input.
        array = resample_linear_axis_parallel(volume.array, volume.geometry, target, default_value)
        if array is not None:
            return Volume(array, target)
    interpolator = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]
    # ITK interpolates integer images in double precision and writes float32 output directly,
    # so a large int16 CT is never copied to float32 at full resolution.
    result = _sitk_resample(volume.to_sitk(), target, interpolator, default_value)
    return Volume(sitk.GetArrayFromImage(result), target)


def resample_above(volume: Volume, target: Geometry, threshold: float = 0.5, default_value: float = 0.0) -> np.ndarray:
    """Exactly ``resample_to(volume, target, order=1, default_value=...).array > threshold`` (bool), without
    the float copy on the target where the grids are axis-parallel (a mask carried onto a fine crop)."""
    if volume.geometry.same_grid(target, tolerance_mm=1e-4):
        return volume.array.astype(np.float32, copy=False) > np.float32(threshold)
    above = above_axis_parallel(volume.array, volume.geometry, target, threshold, default_value)
    if above is not None:
        return above
    return resample_to(volume, target, order=1, default_value=default_value).array > np.float32(threshold)


def resample_channels_to(
    channels: np.ndarray, source: Geometry, target: Geometry, default_values: Sequence[float]
) -> np.ndarray:
    """Linearly resample a (C, k, j, i) float array from ``source`` onto ``target``."""
    out = np.empty((channels.shape[0],) + tuple(target.shape), dtype=np.float32)
    for c in range(channels.shape[0]):
        out[c] = resample_to(Volume(channels[c], source), target, order=1, default_value=default_values[c]).array
    return out
