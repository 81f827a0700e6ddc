"""A 3D image in memory: a NumPy array indexed ``[k, j, i]`` plus its :class:`Geometry`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Geometry

__all__ = ["Volume"]


@dataclass
class Volume:
    """Voxel data on a grid. ``array.shape`` always equals ``geometry.shape``."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != tuple(self.geometry.shape):
            raise ValueError(f"array shape {self.array.shape} does not match geometry shape {self.geometry.shape}")

    def to_sitk(self):
        """A SimpleITK image with the same voxels and geometry (imports SimpleITK lazily)."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        self.geometry.apply_to_sitk(image)
        return image

    @staticmethod
    def from_sitk(image) -> "Volume":
        import SimpleITK as sitk

        return Volume(sitk.GetArrayFromImage(image), Geometry.from_sitk(image))

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same grid, other voxels (e.g. a label map computed for this image)."""
        return Volume(array, self.geometry)
