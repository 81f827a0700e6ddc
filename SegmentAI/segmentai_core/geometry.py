"""The one place where array axes, voxel indices and physical space are converted.

Conventions used everywhere in SegmentAI:

* Arrays are indexed ``array[k, j, i]`` (NumPy/SimpleITK order, ``i`` fastest in memory).
* Voxel indices are written ``(i, j, k)``, as ITK and Slicer count them.
* Physical space is LPS millimetres internally (ITK's convention, used by NRRD/NIfTI readers);
  Slicer's RAS is converted at the boundary with :func:`ras_to_lps` / :func:`lps_to_ras`.
* ``lps = origin + direction @ (spacing * ijk)``; the columns of ``direction`` are the unit
  vectors of the i, j and k axes in LPS.
* Per-axis values written ``(x, y, z)`` (a manifest's patch size, spacing and mirror axes, ITK's
  sizes and spacings) are in ``(i, j, k)`` order; :func:`ijk_to_kji`, :func:`kji_to_ijk` and
  :func:`ijk_axes_to_kji` turn them into array order and back (the manifest's ``*_kji`` accessors
  use them); :func:`points_ijk_to_kji` and :func:`points_kji_to_ijk` do it for arrays of points.

No other module flips or transposes axes: it asks this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

__all__ = [
    "Geometry",
    "ijk_axes_to_kji",
    "ijk_to_kji",
    "kji_to_ijk",
    "points_ijk_to_kji",
    "points_kji_to_ijk",
    "lps_to_ras",
    "ras_to_lps",
    "LPS_TO_RAS",
    "orientation_code",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""Flips L/P to R/A; it is its own inverse."""

_AXIS_LETTERS_LPS = (("L", "R"), ("P", "A"), ("S", "I"))


def ijk_to_kji(values: Sequence) -> tuple:
    """Per-axis values in (i, j[, k]) = (x, y[, z]) order → array order ([k,] j, i)."""
    return tuple(reversed(tuple(values)))


def kji_to_ijk(values: Sequence) -> tuple:
    """Per-axis values in array order ([k,] j, i) → (i, j[, k]) = (x, y[, z]) order."""
    return tuple(reversed(tuple(values)))


def ijk_axes_to_kji(axes: Sequence[int], dims: int) -> Tuple[int, ...]:
    """Axis numbers counted in (x, y[, z]) order (x = 0) → the same axes of a ``dims``-D array."""
    return tuple(dims - 1 - int(a) for a in axes)


def points_ijk_to_kji(points: np.ndarray) -> np.ndarray:
    """Points or indices (..., 3) in (i, j, k) order → (k, j, i) order (a view, no copy)."""
    return np.asarray(points)[..., ::-1]


def points_kji_to_ijk(points: np.ndarray) -> np.ndarray:
    """Points or indices (..., 3) in (k, j, i) order → (i, j, k) order (a view, no copy)."""
    return np.asarray(points)[..., ::-1]


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Convert points (..., 3) from LPS to RAS millimetres."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


def ras_to_lps(points: np.ndarray) -> np.ndarray:
    """Convert points (..., 3) from RAS to LPS millimetres."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


def orientation_code(direction_lps: np.ndarray) -> str:
    """Three letters naming where each of the i, j, k axes points (closest anatomical axis).

    ITK/DICOM style: ``"LPS"`` means i runs toward Left, j toward Posterior, k toward Superior.
    """
    direction = np.asarray(direction_lps, dtype=float)
    letters = []
    for column in direction.T:
        axis = int(np.argmax(np.abs(column)))
        positive = column[axis] >= 0
        letters.append(_AXIS_LETTERS_LPS[axis][0 if positive else 1])
    return "".join(letters)


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a 3D image: array shape, spacing, origin and direction (all in LPS).

    Attributes:
        shape: array shape ``(k, j, i)``.
        spacing: voxel size along ``(i, j, k)`` in mm.
        origin: LPS position of voxel ``(0, 0, 0)`` in mm.
        direction: 3×3 matrix whose columns are the i, j, k unit vectors in LPS.
    """

    shape: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[Tuple[float, float, float], ...]

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def create(
        shape: Sequence[int],
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: np.ndarray | Sequence[Sequence[float]] = np.eye(3),
    ) -> "Geometry":
        """Build a geometry, validating shapes and orthonormality of ``direction``."""
        shape_t = tuple(int(s) for s in shape)
        spacing_t = tuple(float(s) for s in spacing)
        origin_t = tuple(float(o) for o in origin)
        direction_a = np.asarray(direction, dtype=float).reshape(3, 3)
        if len(shape_t) != 3 or len(spacing_t) != 3 or len(origin_t) != 3:
            raise ValueError("a 3D geometry needs three sizes, spacings and origin coordinates")
        if min(spacing_t) <= 0 or not np.all(np.isfinite(spacing_t)):
            raise ValueError(f"spacing must be positive and finite, got {spacing_t}")
        if not np.allclose(direction_a.T @ direction_a, np.eye(3), atol=1e-4):
            raise ValueError("direction matrix is not orthonormal")
        return Geometry(shape_t, spacing_t, origin_t, tuple(tuple(float(v) for v in row) for row in direction_a))

    @staticmethod
    def from_sitk(image) -> "Geometry":
        """Geometry of a 3D SimpleITK image."""
        size_ijk = image.GetSize()
        return Geometry.create(
            shape=tuple(reversed(size_ijk)),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=np.array(image.GetDirection()).reshape(3, 3),
        )

    def apply_to_sitk(self, image) -> None:
        """Stamp this geometry onto a SimpleITK image of matching size."""
        if tuple(reversed(image.GetSize())) != self.shape:
            raise ValueError(f"image size {image.GetSize()} does not match geometry {self.size_ijk}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(np.asarray(self.direction).ravel()))

    # -- derived quantities -------------------------------------------------------------------

    @property
    def size_ijk(self) -> Tuple[int, int, int]:
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def spacing_kji(self) -> Tuple[float, float, float]:
        """Voxel size along the array axes ``(k, j, i)`` in mm."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def ijk_to_lps_matrix(self) -> np.ndarray:
        """4×4 homogeneous matrix mapping (i, j, k, 1) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """4×4 homogeneous matrix mapping (i, j, k, 1) to RAS mm (Slicer's IJKToRAS)."""
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        return flip @ self.ijk_to_lps_matrix()

    def orientation(self) -> str:
        return orientation_code(self.direction_matrix)

    def is_oblique(self, tolerance: float = 1e-4) -> bool:
        """True when some axis is not parallel to an anatomical axis."""
        return not np.allclose(np.abs(self.direction_matrix).max(axis=0), 1.0, atol=tolerance)

    # -- point conversions --------------------------------------------------------------------

    def ijk_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (..., 3) in (i, j, k) order → LPS mm."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction_matrix @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def lps_to_ijk(self, lps: np.ndarray) -> np.ndarray:
        """LPS mm (..., 3) → continuous voxel indices in (i, j, k) order."""
        lps = np.asarray(lps, dtype=float) - np.asarray(self.origin)
        inverse = np.linalg.inv(self.direction_matrix @ np.diag(self.spacing))
        return lps @ inverse.T

    def ras_to_ijk(self, ras: np.ndarray) -> np.ndarray:
        return self.lps_to_ijk(ras_to_lps(ras))

    def ijk_to_ras(self, ijk: np.ndarray) -> np.ndarray:
        return lps_to_ras(self.ijk_to_lps(ijk))

    @staticmethod
    def ijk_to_array_index(ijk: np.ndarray) -> np.ndarray:
        """Rounded (i, j, k) indices (..., 3) → integer (k, j, i) array indices."""
        return np.rint(np.asarray(ijk, dtype=float)[..., ::-1]).astype(np.int64)

    def contains_index(self, kji: np.ndarray) -> np.ndarray:
        """Whether integer (k, j, i) indices (..., 3) fall inside the array."""
        kji = np.asarray(kji)
        return np.all((kji >= 0) & (kji < np.asarray(self.shape)), axis=-1)

    def corners_lps(self) -> np.ndarray:
        """LPS positions of the eight corner voxel centres, shape (8, 3)."""
        extent = np.array(self.size_ijk) - 1
        corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=float)
        return self.ijk_to_lps(corners * extent)

    # -- comparisons and derived grids --------------------------------------------------------

    def same_grid(self, other: "Geometry", tolerance_mm: float = 1e-3) -> bool:
        """True when both geometries put every voxel at the same place (within tolerance).

        NIfTI stores geometry as float32, so exact equality is too strict (0.8 → 0.800000011).
        """
        if self.shape != other.shape:
            return False
        return bool(np.allclose(self.corners_lps(), other.corners_lps(), atol=tolerance_mm, rtol=0))

    def describe(self) -> str:
        size = "×".join(str(s) for s in self.size_ijk)
        spacing = "×".join(f"{s:g}" for s in self.spacing)
        return f"{size} voxels, {spacing} mm, {self.orientation()}{' oblique' if self.is_oblique() else ''}"

    def with_shape(self, shape: Sequence[int]) -> "Geometry":
        return Geometry.create(shape, self.spacing, self.origin, self.direction_matrix)

    def cropped(self, start_kji: Sequence[int], stop_kji: Sequence[int]) -> "Geometry":
        """Geometry of ``array[k0:k1, j0:j1, i0:i1]``: same spacing/direction, moved origin."""
        start_ijk = np.asarray(start_kji, dtype=float)[::-1]
        shape = tuple(int(b) - int(a) for a, b in zip(start_kji, stop_kji))
        return Geometry.create(shape, self.spacing, self.ijk_to_lps(start_ijk), self.direction_matrix)

    # -- array axis permutations to a canonical orientation ----------------------------------

    def axis_alignment(self) -> Tuple[Tuple[int, int, int], Tuple[bool, bool, bool]]:
        """For each LPS axis (x, y, z): which ijk axis is closest to it, and whether it is reversed.

        Only meaningful for non-oblique geometries (see :meth:`is_oblique`).
        """
        d = self.direction_matrix
        ijk_for_axis = tuple(int(np.argmax(np.abs(d[row, :]))) for row in range(3))
        if sorted(ijk_for_axis) != [0, 1, 2]:
            raise ValueError("direction matrix does not map axes one-to-one")
        reversed_ = tuple(bool(d[row, ijk_for_axis[row]] < 0) for row in range(3))
        return ijk_for_axis, reversed_  # type: ignore[return-value]
