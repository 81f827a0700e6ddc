"""Box prompts from markups ROI nodes (``vtkMRMLMarkupsROINode``) placed in the slice views.

An ROI is a box in its own frame: a centre, a size along three axes and a rotation (its
object-to-world matrix; parent transforms included). The core's boxes are aligned with the
volume's voxel axes, so an ROI becomes a box prompt this way:

* **2D box** — an ROI less than one voxel thick along one of its axes (as :class:`PromptBoxes`
  makes every box drawn on one slice): the rectangle's corners, in voxel indices, bound the box on
  the voxel slice through its centre, across the voxel axis closest to the ROI's normal. When the
  rectangle is not on a voxel plane (an oblique volume in RAS-aligned views) it is projected on it.
* **3D box** — any other ROI: the axis-aligned bounds of its eight corners in the volume's voxel
  indices. A rotated ROI therefore becomes the smallest voxel-aligned box that contains it.

Boxes are clipped to the volume; a box entirely outside it is refused with one readable line.

Placement: Slicer defines a box ROI by two clicks (opposite corners). Clicked on one slice, the two
corners share a coordinate along one ROI axis and Slicer pads that axis to the ROI's shorter side,
which would make a 3D box out of a rectangle. :class:`PromptBoxes` orients each new ROI like the
slice views and, when the clicks share a plane, flattens the ROI to ``FLAT_THICKNESS_MM`` along it:
the ROI shown is the 2D box sent.
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, Set, Tuple

import numpy as np
import slicer
import vtk
from segmentai_core.errors import InputError

from .markups import node_ras_to_world, start_placement, world_to_node_ras
from .prompt_modes import PromptMode
from .prompt_nodes import PromptNodeList, add_prompt_node
from .volume_nodes import geometry_from_node, matrix_from_vtk, matrix_to_vtk

__all__ = ["FLAT_THICKNESS_MM", "PromptBoxes", "roi_box_corners", "roi_box_ijk", "slice_view_axes"]

FLAT_THICKNESS_MM = 0.01  # thin enough to be under a voxel, thick enough for the slice views to cut cleanly
_ORIGIN_TOLERANCE_MM = 1e-4  # two clicks on one slice share that coordinate up to rounding
_CORNER_TOLERANCE_MM = 1e-3  # the first click sits on the settled box's corner up to rounding


def _frame(roi_node) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit axes (columns, world RAS), centre (world RAS) and size (mm) of an ROI."""
    matrix = matrix_from_vtk(roi_node.GetObjectToWorldMatrix())
    axes = matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0)
    size = [0.0, 0.0, 0.0]
    roi_node.GetSizeWorld(size)  # the node's size seen through its parent transforms
    return axes, matrix[:3, 3].copy(), np.asarray(size, dtype=float)


def _to_ijk(points_world: np.ndarray, volume_node) -> np.ndarray:
    """World RAS points (N, 3) → continuous voxel indices (i, j, k) of ``volume_node``."""
    return geometry_from_node(volume_node).ras_to_ijk(world_to_node_ras(points_world, volume_node)).reshape(-1, 3)


def roi_box_ijk(roi_node, volume_node) -> Tuple[np.ndarray, np.ndarray, int]:
    """The box prompt of ``roi_node`` in ``volume_node``'s voxel indices: low and high ``(i, j, k)``
    corners (clipped to the volume) and the flat voxel axis of a 2D box (-1 for a 3D box).

    Raises InputError when the ROI is flat along two axes or lies outside the volume.
    """
    if roi_node is None or volume_node is None:
        raise InputError("select a volume and draw a box")
    axes, centre, size = _frame(roi_node)
    centre_ijk = _to_ijk(centre[None], volume_node)[0]
    # Voxel displacement of one millimetre along each ROI axis: how many voxels the ROI spans.
    per_mm = _to_ijk(centre + axes.T, volume_node) - centre_ijk
    thin = [a for a in range(3) if size[a] * np.abs(per_mm[a]).max() < 1.0]
    if len(thin) > 1:
        raise InputError(f"the box '{roi_node.GetName()}' is flat along two axes: give it two opposite corners")
    half = size / 2.0
    if thin:
        half[thin[0]] = 0.0  # the rectangle itself
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    corners_ijk = _to_ijk(centre + (signs * half) @ axes.T, volume_node)
    lo, hi = corners_ijk.min(axis=0), corners_ijk.max(axis=0)
    geometry = geometry_from_node(volume_node)
    flat = -1
    if thin:  # the voxel axis physically closest to the ROI's normal
        flat = int(np.argmax(np.abs(per_mm[thin[0]]) * np.asarray(geometry.spacing, dtype=float)))
        lo[flat] = hi[flat] = centre_ijk[flat]
    last = np.asarray(geometry.size_ijk, dtype=float) - 1.0
    if np.any(hi < -0.5) or np.any(lo > last + 0.5):
        raise InputError(f"the box '{roi_node.GetName()}' lies outside volume '{volume_node.GetName()}'")
    return np.clip(lo, 0.0, last), np.clip(hi, 0.0, last), flat


def roi_box_corners(roi_node, volume_node) -> Tuple[np.ndarray, np.ndarray]:
    """Two opposite world RAS corners of the box prompt of ``roi_node`` (see :func:`roi_box_ijk`),
    as :meth:`~.refinement.ClickRefiner.add_box` takes them."""
    lo, hi, _ = roi_box_ijk(roi_node, volume_node)
    corners = node_ras_to_world(geometry_from_node(volume_node).ijk_to_ras(np.stack([lo, hi])), volume_node)
    return corners[0], corners[1]


def slice_view_axes(scene) -> np.ndarray:
    """Right-handed unit axes (columns, RAS) of the slice views: the red view's, or RAS without views."""
    node = scene.GetNodeByID("vtkMRMLSliceNodeRed") or scene.GetFirstNodeByClass("vtkMRMLSliceNode")
    if node is None:
        return np.eye(3)
    axes = matrix_from_vtk(node.GetSliceToRAS())[:3, :3]
    axes = axes / np.linalg.norm(axes, axis=0)
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1.0  # an ROI frame is right-handed; a box does not care about an axis's sign
    return axes


class PromptBoxes(PromptNodeList):
    """Box placement with ROI nodes: ``on_box(roi_node)`` runs once per box, when its two corners are placed.

    One ROI node per box: while placing, a fresh node (``pending``) is waiting for the next two clicks;
    placed boxes stay shown (locked) until :meth:`clear`.
    """

    def __init__(self, scene, on_box: Callable[[object], None]) -> None:
        super().__init__(scene)
        self.on_box = on_box
        self._placing = False
        self._first_click: Dict[str, np.ndarray] = {}
        self._reported: Set[str] = set()

    def new_node(self):
        """A new, observed ROI node oriented like the slice views (for the next box)."""
        node = add_prompt_node(self.scene, "vtkMRMLMarkupsROINode", PromptMode.BOX.node_name,
                               PromptMode.BOX.color)
        rotation = np.eye(4)
        rotation[:3, :3] = slice_view_axes(self.scene)
        node.GetObjectToNodeMatrix().DeepCopy(matrix_to_vtk(rotation))
        # Slicer does not always deliver PointPositionDefinedEvent for the second corner (the ROI node
        # turns the two corners into its box inside a modification block, and which deferred events
        # reach the observers varied from run to run); every change of the node also ends in a
        # ModifiedEvent, so both run the same check of the node's state, which waits until the box
        # has settled (its size is set before its centre moves).
        self._keep(node, (vtk.vtkCommand.ModifiedEvent, lambda caller, event: self._defined(caller)))
        return self._keep(node, (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                 lambda caller, event: self._defined(caller)))

    def place(self) -> None:
        """Place boxes until :meth:`stop`: a fresh node becomes the active place node after each box."""
        self._placing = True
        if self.pending is None or not self._present(self.pending):
            self.pending = self.new_node()
        start_placement(self.scene, self.pending)

    def stop(self) -> None:
        """Stop placing boxes and remove an unfinished one (the caller switches the mouse mode)."""
        self._placing = False
        if self.pending is not None and self._present(self.pending):
            self._remove(self.pending)
        self.pending = None

    def _defined(self, node) -> None:
        """A corner was placed: remember the first; on the second, flatten a one-slice box and report it."""
        complete = node.GetNumberOfDefinedControlPoints() >= 2 or (
            node.GetRequiredNumberOfControlPoints() == 1 and node.GetNumberOfControlPoints() == 1)
        if not complete:  # Slicer turns a finished box's two corners into one centre point
            index = next((i for i in range(node.GetNumberOfControlPoints())
                          if node.GetNthControlPointPositionStatus(i) == node.PositionDefined), None)
            if index is None:
                return  # no corner placed yet (only a preview point follows the mouse)
            position = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(index, position)
            self._first_click[node.GetID()] = np.array(position)
            return
        if node.GetID() in self._reported:
            return
        first = self._first_click.get(node.GetID())
        if first is not None and not self._corner_of_box(node, first):
            return  # Slicer sets the size before it moves the centre: wait for the box to settle
        self._reported.add(node.GetID())
        self._first_click.pop(node.GetID(), None)
        if first is not None:
            self._flatten_if_on_one_slice(node, first)
        node.SetLocked(True)
        if node is self.pending:
            self.pending = None
            if self._placing:  # the next two clicks draw the next box
                self.place()
        self.on_box(node)

    @staticmethod
    def _corner_of_box(node, first_click: np.ndarray) -> bool:
        """Whether the first click is a corner of the node's box along at least two of its axes (the
        third is the shared one of a box drawn on one slice): the box has settled on its two corners."""
        axes, centre, size_world = _frame(node)
        offset = np.abs(axes.T @ (first_click - centre))
        return int(np.sum(np.abs(offset - size_world / 2.0) < _CORNER_TOLERANCE_MM)) >= 2

    @staticmethod
    def _flatten_if_on_one_slice(node, first_click: np.ndarray) -> None:
        axes, centre, size_world = _frame(node)
        offset = axes.T @ (first_click - centre)  # the first corner in the ROI's frame
        shared = [a for a in range(3) if abs(offset[a]) < _ORIGIN_TOLERANCE_MM and size_world[a] > 0]
        if len(shared) == 1:
            size = np.asarray(node.GetSize(), dtype=float)
            size[shared[0]] = FLAT_THICKNESS_MM
            node.SetSize(*map(float, size))

    def close(self) -> None:
        """Stop observing and remove every box node."""
        self._placing = False
        self.remove_all()
        self._first_click.clear()
        self._reported.clear()
