"""Scalar volume nodes ↔ core :class:`~segmentai_core.volume.Volume`.

Slicer stores a volume's grid as its IJKToRAS matrix; the core stores it as a
:class:`~segmentai_core.geometry.Geometry` in LPS. The conversion goes through the geometry
module (``LPS_TO_RAS``, ``ras_to_lps``, ``Geometry.ijk_to_ras_matrix``) and nowhere else. Both
sides index arrays ``[k, j, i]`` (``slicer.util.arrayFromVolume``), so no axis is flipped here.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import slicer
import slicer.util
import vtk
from segmentai_core.errors import InputError
from segmentai_core.geometry import LPS_TO_RAS, Geometry, ras_to_lps
from segmentai_core.volume import Volume

__all__ = [
    "add_volume_node",
    "geometry_from_node",
    "matrix_from_vtk",
    "matrix_to_vtk",
    "set_node_geometry",
    "volume_from_node",
]


def matrix_from_vtk(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A 4x4 NumPy copy of a ``vtkMatrix4x4``."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def matrix_to_vtk(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A ``vtkMatrix4x4`` holding the 4x4 ``array``."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _image_data(node) -> vtk.vtkImageData:
    image = node.GetImageData() if node is not None else None
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        name = node.GetName() if node is not None else "(none)"
        raise InputError(f"volume '{name}' has no voxel data")
    return image


def geometry_from_node(node) -> Geometry:
    """The grid of a volume node (its local IJKToRAS, without any parent transform) as an LPS Geometry."""
    image = _image_data(node)
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    m = matrix_from_vtk(ijk_to_ras)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"volume '{node.GetName()}' has a zero voxel spacing")
    direction_ras = m[:3, :3] / spacing
    size_ijk = image.GetDimensions()
    try:
        return Geometry.create(
            shape=tuple(reversed(size_ijk)),
            spacing=spacing,
            origin=ras_to_lps(m[:3, 3]),
            direction=LPS_TO_RAS @ direction_ras,  # its own inverse: RAS→LPS for direction columns too
        )
    except ValueError as error:
        raise InputError(f"volume '{node.GetName()}': {error}") from error


def set_node_geometry(node, geometry: Geometry) -> None:
    """Give ``node`` the grid of ``geometry`` (IJKToRAS: origin, spacing and directions)."""
    node.SetIJKToRASMatrix(matrix_to_vtk(geometry.ijk_to_ras_matrix()))


def volume_from_node(node) -> Volume:
    """A copy of a scalar volume node's voxels (``[k, j, i]``) with its geometry.

    The copy is what makes worker threads safe: the scene's memory is never read off the main thread.
    """
    image = _image_data(node)
    if image.GetNumberOfScalarComponents() != 1 or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(f"volume '{node.GetName()}' is not a single-component scalar volume")
    geometry = geometry_from_node(node)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    return Volume(array, geometry)


def add_volume_node(scene, volume: Volume, name: str, labelmap: bool = False,
                    node_class: Optional[str] = None) -> slicer.vtkMRMLScalarVolumeNode:
    """Add a scalar (or label map) volume node holding a copy of ``volume`` to ``scene``."""
    cls = node_class or ("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode")
    node = scene.AddNewNodeByClass(cls, name)
    set_node_geometry(node, volume.geometry)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    node.CreateDefaultDisplayNodes()
    return node
