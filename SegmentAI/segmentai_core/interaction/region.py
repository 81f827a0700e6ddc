"""The local region an interaction re-segments: a crop of the original grid around the object and
the prompts, and the isotropic working grid (the predictor's spacing) that samples it.

Only this region is predicted and pasted back, so one click costs the same on a 512³ CT as on a
small MRI. Small objects are seen at the predictor's own spacing; larger ones are seen whole at a
coarser spacing (up to ``max_zoom`` times); objects larger still are refined in a window of the
predictor's size around the newest prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..geometry import Geometry, ijk_to_kji, kji_to_ijk
from ..inference.canonical import orientation_direction

__all__ = ["RegionSettings", "LocalRegion", "plan_region", "zoom_out_points", "touches_open_border", "beyond_image"]

Slices = Tuple[slice, slice, slice]


@dataclass(frozen=True)
class RegionSettings:
    """How large a working grid a predictor takes and how much context it wants around the object."""

    spacing_mm: float = 1.5
    max_size: int = 96
    size_multiple: int = 16
    margin_mm: float = 12.0
    min_extent_mm: float = 48.0
    max_zoom: float = 2.0
    orientation: str = "RAS"


@dataclass
class LocalRegion:
    """``crop`` (array slices [k, j, i]) of the original grid, its geometry, and the working grid."""

    crop: Slices
    crop_geometry: Geometry
    working: Geometry


def _box_kji(geometry: Geometry, low_lps: np.ndarray, high_lps: np.ndarray) -> Slices:
    """Array slices covering the physical box [low, high] (in the grid's own axes), clipped."""
    corners = np.array([[a[0], b[1], c[2]] for a in (low_lps, high_lps) for b in (low_lps, high_lps)
                        for c in (low_lps, high_lps)])
    ijk = geometry.lps_to_ijk(corners)
    lo = np.floor(ijk.min(axis=0)).astype(int)
    hi = np.ceil(ijk.max(axis=0)).astype(int) + 1
    size = np.array(geometry.size_ijk)
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    return tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))  # type: ignore[return-value]


def _object_points_ijk(mask: np.ndarray) -> Optional[np.ndarray]:
    from ..inference.postprocess import bounding_box

    box = bounding_box(mask, margin=0)
    if box is None:
        return None
    k, j, i = [(s.start, s.stop - 1) for s in box]
    return np.array([[a, b, c] for a in i for b in j for c in k], dtype=float)


def plan_region(geometry: Geometry, mask: np.ndarray, prompt_points_ijk: np.ndarray, latest_ijk: np.ndarray,
                settings: RegionSettings) -> LocalRegion:
    """Choose the crop and working grid for the current object (``mask``) and all its prompts."""
    points = [np.asarray(prompt_points_ijk, dtype=float).reshape(-1, 3)]
    object_points = _object_points_ijk(mask)
    if object_points is not None:
        points.append(object_points)
    lps = geometry.ijk_to_lps(np.concatenate(points))
    # Work in physical space so that anisotropic and oblique grids get the same context in mm.
    low, high = lps.min(axis=0), lps.max(axis=0)
    centre = (low + high) / 2
    half = np.maximum((high - low) / 2 + settings.margin_mm, settings.min_extent_mm / 2)
    extent = float((2 * half).max())
    spacing = max(settings.spacing_mm, extent / settings.max_size)
    if spacing > settings.spacing_mm * settings.max_zoom:
        # Too large to see whole: a window of the predictor's size around the newest prompt.
        spacing = settings.spacing_mm
        centre = geometry.ijk_to_lps(np.asarray(latest_ijk, dtype=float).reshape(3))
        half = np.full(3, settings.max_size * spacing / 2)
    # Keep the crop's physical box no larger than the working grid can hold.
    half = np.minimum(half, settings.max_size * spacing / 2)
    working = _working_grid(centre, half, spacing, settings)
    corners = working.corners_lps()
    crop = _box_kji(geometry, corners.min(axis=0), corners.max(axis=0))
    crop_geometry = geometry.cropped([s.start for s in crop], [s.stop for s in crop])
    return LocalRegion(crop, crop_geometry, working)


def _working_grid(centre_lps: np.ndarray, half_mm: np.ndarray, spacing: float, settings: RegionSettings) -> Geometry:
    """Axis-aligned grid (in ``settings.orientation``) centred on ``centre_lps`` whose sizes divide by
    ``size_multiple`` (the U-Net's rule), covering at least ``half_mm`` either side."""
    direction = orientation_direction(settings.orientation)
    half_axes = np.abs(direction.T) @ half_mm  # half extents along the grid's own axes
    multiple = settings.size_multiple
    size = np.maximum(multiple, np.ceil((2 * half_axes / spacing) / multiple).astype(int) * multiple)
    origin = np.asarray(centre_lps) - direction @ ((size - 1) * spacing / 2.0)
    return Geometry.create(ijk_to_kji(int(n) for n in size), (spacing,) * 3, origin, direction)


def zoom_out_points(region: LocalRegion, geometry: Geometry, factor: float = 1.5) -> np.ndarray:
    """Corners (voxel indices i, j, k of ``geometry``) of ``region``'s working grid scaled by ``factor``
    about its centre: extra points for :func:`plan_region` that frame a ``factor`` times larger view."""
    corners = region.working.corners_lps()
    centre = corners.mean(axis=0)
    return geometry.lps_to_ijk(centre + factor * (corners - centre))


def beyond_image(geometry: Geometry, working: Geometry) -> np.ndarray:
    """Bool [k, j, i] on the ``working`` grid: voxels whose centres lie outside ``geometry``'s image
    (more than half a voxel beyond its first or last voxel centre along any axis)."""
    to_image = np.linalg.inv(geometry.ijk_to_lps_matrix()) @ working.ijk_to_lps_matrix()
    nk, nj, ni = working.shape
    k = np.arange(nk, dtype=np.float64)[:, None, None]
    j = np.arange(nj, dtype=np.float64)[None, :, None]
    i = np.arange(ni, dtype=np.float64)[None, None, :]
    beyond = np.zeros((nk, nj, ni), dtype=bool)
    for axis, size in enumerate(geometry.size_ijk):
        row = to_image[axis]
        index = row[0] * i + row[1] * j + row[2] * k + row[3]
        beyond |= (index < -0.5) | (index > size - 0.5)
    return beyond


def touches_open_border(probability: np.ndarray, working: Geometry, geometry: Geometry) -> bool:
    """True when the object (probability > 0.5 on the working grid [k, j, i]) reaches a face of the
    working grid that lies inside the image: the object goes on beyond the view, which a larger
    view would show. Faces outside the image (the view was cut by the image's edge) do not count."""
    inside = probability > 0.5
    shape = np.array(inside.shape)
    centre = (shape - 1) / 2.0
    for axis in range(3):
        for side in (0, -1):
            face = np.take(inside, side, axis=axis)
            if not face.any():
                continue
            centre_kji = centre.copy()
            centre_kji[axis] = 0 if side == 0 else shape[axis] - 1
            ijk = geometry.lps_to_ijk(working.ijk_to_lps(np.array(kji_to_ijk(centre_kji))[None]))[0]
            if np.all((ijk >= -0.5) & (ijk <= np.array(geometry.size_ijk) - 0.5)):
                return True
    return False
