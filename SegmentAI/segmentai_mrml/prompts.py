"""The panel's prompts placed in the slice views: positive/negative points and boxes.

Each point polarity has its own markups fiducial node (green: add to the segment, red: remove),
observed for ``PointPositionDefinedEvent``: every point the user places calls
``on_point(position, positive)`` with the point's world RAS position. Boxes are markups ROI nodes
(:class:`~.box_prompt.PromptBoxes`): ``on_box(roi_node)`` runs once per box. One placement mode at a
time, switched through the scene's selection and interaction singletons (MRML only, so the same
code runs in Slicer and on slicer-core).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

import slicer

from .box_prompt import PromptBoxes
from .markups import start_placement, stop_placement

__all__ = ["BOX", "PromptPoints"]

COLORS = {True: (0.2, 0.9, 0.2), False: (1.0, 0.25, 0.25)}
BOX = "box"
"""The placement mode of boxes (points are ``True``: positive, ``False``: negative)."""


class PromptPoints:
    """The prompt nodes of ``scene``: ``on_point(position_ras, positive)`` runs for each placed point,
    ``on_box(roi_node)`` for each placed box (boxes are refused without ``on_box``)."""

    def __init__(self, scene, on_point: Callable[[Tuple[float, float, float], bool], None],
                 on_box: Optional[Callable[[object], None]] = None) -> None:
        self.scene = scene
        self.on_point = on_point
        self.on_box = on_box
        self._nodes: Dict[bool, object] = {}
        self._observers: List[Tuple[object, int]] = []
        self._boxes: Optional[PromptBoxes] = None

    def node(self, positive: bool):
        """The prompt node of one polarity (created, and observed, when missing from the scene)."""
        node = self._nodes.get(positive)
        if node is not None and self.scene.GetNodeByID(node.GetID()) is node:
            return node
        name = "SegmentAI positive points" if positive else "SegmentAI negative points"
        node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.SetHideFromEditors(False)
        node.SetSaveWithScene(False)  # prompts, not data
        display = node.GetDisplayNode()
        if display is None:
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(*COLORS[positive])
            display.SetColor(*COLORS[positive])
            display.SetPointLabelsVisibility(False)
        tag = node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                               lambda caller, event, p=positive: self._placed(caller, p))
        self._observers.append((node, tag))
        self._nodes[positive] = node
        return node

    @property
    def boxes(self) -> PromptBoxes:
        """The box prompts (markups ROI nodes), created on first use."""
        if self._boxes is None:
            if self.on_box is None:
                raise ValueError("PromptPoints was made without on_box: boxes are not handled")
            self._boxes = PromptBoxes(self.scene, self.on_box)
        return self._boxes

    def _placed(self, node, positive: bool) -> None:
        count = node.GetNumberOfControlPoints()
        if count == 0:
            return
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(count - 1, position)
        self.on_point((position[0], position[1], position[2]), positive)

    def place(self, mode: Union[bool, str, None]) -> None:
        """Persistent place mode: positive points (``True``), negative points (``False``), boxes
        (:data:`BOX`), or back to view mode (``None``)."""
        if mode != BOX and self._boxes is not None:
            self._boxes.stop()  # drops a half-drawn box
        if mode is None:
            stop_placement(self.scene)
        elif mode == BOX:
            self.boxes.place()
        else:
            start_placement(self.scene, self.node(bool(mode)))

    def clear(self) -> None:
        """Remove the placed points and boxes (the segment keeps its refinement)."""
        for node in self._nodes.values():
            if self.scene.GetNodeByID(node.GetID()) is node:
                node.RemoveAllControlPoints()
        if self._boxes is not None:
            self._boxes.clear()

    def close(self) -> None:
        """Stop observing and remove the prompt nodes."""
        for node, tag in self._observers:
            node.RemoveObserver(tag)
        self._observers.clear()
        for node in self._nodes.values():
            if self.scene.GetNodeByID(node.GetID()) is node:
                self.scene.RemoveNode(node)
        self._nodes.clear()
        if self._boxes is not None:
            self._boxes.close()
            self._boxes = None
