"""nnU-Net v2's resampling rule, re-implemented so that imported models see the data they learnt on.

Arrays here are in nnU-Net's *model* axis order (after the plans' ``transpose_forward``), shape
``(channels, a0, a1, a2)``; spacings follow the same order. The rule (nnU-Net's default
``resample_data_or_seg_to_shape``):

* new shape = round(old shape × old spacing / new spacing);
* when either spacing is anisotropic (max/min > 3) and exactly one axis is the coarse one, each
  slice across that axis is resized in 2D with spline order ``order`` and the coarse axis is then
  resampled with ``order_z`` (0 = nearest slice);
* otherwise one 3D resize with ``order``. Resizes use half-voxel-aligned coordinates and edge
  padding (scikit-image's ``resize`` with ``mode="edge"`` and no anti-aliasing).

Computations stay in float32 (nnU-Net uses float64): the difference is ~1e-6 of the range.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["ANISOTROPY_THRESHOLD", "new_shape_for", "separate_axis", "resample_nnunet"]

ANISOTROPY_THRESHOLD = 3.0


def new_shape_for(shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]) -> Tuple[int, ...]:
    """Shape after resampling from ``old_spacing`` to ``new_spacing`` (Python's round, as nnU-Net)."""
    return tuple(int(round(o / n * s)) for s, o, n in zip(shape, old_spacing, new_spacing))


def _coarse_axes(spacing: Sequence[float]) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=float)
    return np.where(max(spacing) / spacing == 1)[0]


def _anisotropic(spacing: Sequence[float]) -> bool:
    return bool(np.max(spacing) / np.min(spacing) > ANISOTROPY_THRESHOLD)


def separate_axis(current: Sequence[float], new: Sequence[float], force: Optional[bool] = None) -> Optional[int]:
    """The axis resampled on its own (None for a plain 3D resize), decided as nnU-Net does."""
    if force is not None:
        axes = _coarse_axes(current) if force else None
    elif _anisotropic(current):
        axes = _coarse_axes(current)
    elif _anisotropic(new):
        axes = _coarse_axes(new)
    else:
        axes = None
    # Two or three equally coarse axes: no single out-of-plane axis, so resample in 3D.
    if axes is None or len(axes) != 1:
        return None
    return int(axes[0])


def _resize(image: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, tuple(int(s) for s in shape), order=order, mode="edge", anti_aliasing=False,
                  preserve_range=True).astype(np.float32, copy=False)


def _nearest_indices(old: int, new: int) -> np.ndarray:
    """Source slice of each output slice for order-0 resampling with half-voxel alignment."""
    from scipy.ndimage import map_coordinates

    coordinates = (old / new) * (np.arange(new) + 0.5) - 0.5
    # map_coordinates on the index ramp applies SciPy's own rounding rule, as nnU-Net's call does.
    picked = map_coordinates(np.arange(old, dtype=np.float64), [coordinates], order=0, mode="nearest")
    return picked.astype(np.int64)


def _resample_along(volume: np.ndarray, axis: int, new: int, order: int) -> np.ndarray:
    """Resample one axis only (the others already have their final size)."""
    old = volume.shape[axis]
    if order == 0:
        return np.take(volume, _nearest_indices(old, new), axis=axis)
    from scipy.ndimage import map_coordinates

    shape = volume.shape[:axis] + (new,) + volume.shape[axis + 1:]
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    grid[axis] = (old / new) * (grid[axis] + 0.5) - 0.5
    return map_coordinates(volume, np.array(grid), order=order, mode="nearest").astype(np.float32, copy=False)


def resample_nnunet(
    data: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 3,
    order_z: int = 0,
    force_separate_z: Optional[bool] = None,
) -> np.ndarray:
    """Resample ``data`` (C, a0, a1, a2) to ``new_shape`` by nnU-Net's rule; float32 out."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=False)
    axis = separate_axis(current_spacing, new_spacing, force_separate_z)
    out = np.empty((data.shape[0],) + new_shape, dtype=np.float32)
    for c in range(data.shape[0]):
        channel = data[c].astype(np.float32, copy=False)
        if axis is None:
            out[c] = _resize(channel, new_shape, order)
            continue
        in_plane = tuple(s for a, s in enumerate(new_shape) if a != axis)
        moved = np.moveaxis(channel, axis, 0)
        slices = np.empty((moved.shape[0],) + in_plane, dtype=np.float32)
        for index in range(moved.shape[0]):
            slices[index] = _resize(moved[index], in_plane, order) if moved.shape[1:] != in_plane else moved[index]
        resized = np.moveaxis(slices, 0, axis)
        if resized.shape[axis] != new_shape[axis]:
            resized = _resample_along(resized, axis, new_shape[axis], order_z)
        out[c] = resized
    return out
