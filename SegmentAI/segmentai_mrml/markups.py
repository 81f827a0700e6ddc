"""Markups control points → RAS points → voxel indices of a volume (prompts for interaction).

Control points are read in world RAS (parent transforms applied), brought into the volume's own
RAS frame (its parent transform undone), then into voxel indices through the core's Geometry.
Placement (which node the clicks in the views go to) is switched through the scene's selection and
interaction singletons, so the same code runs in Slicer and on slicer-core.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import slicer
import slicer.util
import vtk
from segmentai_core.errors import InputError

from .volume_nodes import geometry_from_node

__all__ = ["control_points_ijk", "control_points_ras", "node_ras_to_world", "ras_to_voxel_indices", "start_placement",
           "stop_placement", "world_to_node_ras"]


def control_points_ras(markups_node, world: bool = True) -> np.ndarray:
    """Control point positions (N, 3) in RAS mm; ``world=True`` applies the node's parent transforms."""
    if markups_node is None or markups_node.GetNumberOfControlPoints() == 0:
        return np.zeros((0, 3))
    return np.asarray(slicer.util.arrayFromMarkupsControlPoints(markups_node, world=world), dtype=float)


def _through_parent(points_ras: np.ndarray, node, to_world: bool) -> np.ndarray:
    """Points (N, 3) mapped between world RAS and ``node``'s local RAS frame (its parent transforms)."""
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    parent = node.GetParentTransformNode()
    if parent is None:
        return points
    transform = vtk.vtkGeneralTransform()
    source, target = (parent, None) if to_world else (None, parent)
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(source, target, transform)
    return np.array([transform.TransformPoint(*map(float, p)) for p in points]).reshape(-1, 3)


def world_to_node_ras(points_ras: np.ndarray, node) -> np.ndarray:
    """World RAS points (N, 3) → the local RAS frame of ``node`` (undoing its parent transforms)."""
    return _through_parent(points_ras, node, to_world=False)


def ras_to_voxel_indices(points_ras: np.ndarray, volume_node) -> Tuple[np.ndarray, np.ndarray]:
    """World RAS points (N, 3) → nearest voxel indices (N, 3) in ``(i, j, k)`` order, and an inside mask (N,)."""
    geometry = geometry_from_node(volume_node)
    ijk = geometry.ras_to_ijk(world_to_node_ras(points_ras, volume_node))
    indices = np.rint(ijk).astype(np.int64).reshape(-1, 3)
    inside = np.all((indices >= 0) & (indices < np.asarray(geometry.size_ijk)), axis=-1)
    return indices, inside


def control_points_ijk(markups_node, volume_node, require_inside: bool = True) -> np.ndarray:
    """Voxel indices (N, 3) in ``(i, j, k)`` order of a markups node's control points in ``volume_node``.

    Raises InputError when ``require_inside`` and some point lies outside the volume.
    """
    indices, inside = ras_to_voxel_indices(control_points_ras(markups_node), volume_node)
    if require_inside and not inside.all():
        outside = ", ".join(str(int(n) + 1) for n in np.flatnonzero(~inside))
        raise InputError(f"point(s) {outside} of '{markups_node.GetName()}' lie outside volume "
                         f"'{volume_node.GetName()}'")
    return indices


def node_ras_to_world(points_ras: np.ndarray, node) -> np.ndarray:
    """Points (N, 3) in the local RAS frame of ``node`` → world RAS (applying its parent transforms)."""
    return _through_parent(points_ras, node, to_world=True)


def start_placement(scene, markups_node, persistent: bool = True) -> bool:
    """Make ``markups_node`` the node that clicks in the views place points into (Slicer's place mode).

    Uses the scene's selection and interaction singletons only (no GUI); returns False without them.
    """
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    if interaction is None or selection is None:
        return False
    selection.SetReferenceActivePlaceNodeClassName(markups_node.GetClassName())
    selection.SetActivePlaceNodeID(markups_node.GetID())
    interaction.SetPlaceModePersistence(1 if persistent else 0)
    interaction.SetCurrentInteractionMode(interaction.Place)
    return True


def stop_placement(scene) -> None:
    """Back to the views' ordinary mouse mode (view and transform)."""
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    if interaction is not None:
        interaction.SwitchToViewTransformMode()
