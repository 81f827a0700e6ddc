"""The panel's prompts placed in the slice views: positive/negative points, boxes and scribbles.

Each point polarity has its own markups fiducial node (green: add to the segment, red: remove),
observed for ``PointPositionDefinedEvent``: every point the user places calls
``on_point(position, positive)`` with the point's world RAS position. Boxes are markups ROI nodes
(:class:`~.box_prompt.PromptBoxes`): ``on_box(roi_node)`` runs once per box. Scribbles are open curves
(:class:`~.scribble_prompt.PromptScribbles`): ``on_scribble(points_world, positive)`` runs once per finished
curve. One placement mode at a time, switched through the scene's selection and interaction singletons
(MRML only, so the same code runs in Slicer and on slicer-core).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

import slicer

from .box_prompt import PromptBoxes
from .markups import start_placement, stop_placement
from .prompt_nodes import PROMPT_COLORS, add_prompt_node
from .scribble_prompt import PromptScribbles

__all__ = ["BOX", "SCRIBBLE_POSITIVE", "SCRIBBLE_NEGATIVE", "PromptPoints"]

BOX = "box"
"""The placement mode of boxes (points are ``True``: positive, ``False``: negative)."""
SCRIBBLE_POSITIVE, SCRIBBLE_NEGATIVE = "scribble+", "scribble-"
"""The placement modes of object and background scribbles."""
SCRIBBLES = {SCRIBBLE_POSITIVE: True, SCRIBBLE_NEGATIVE: False}


class PromptPoints:
    """The prompt nodes of ``scene``: ``on_point(position_ras, positive)`` runs for each placed point,
    ``on_box(roi_node)`` for each placed box, ``on_scribble(points_world, positive)`` for each finished
    scribble (boxes and scribbles are refused without their callback)."""

    def __init__(self, scene, on_point: Callable[[Tuple[float, float, float], bool], None],
                 on_box: Optional[Callable[[object], None]] = None,
                 on_scribble: Optional[Callable[[object, bool], None]] = None) -> None:
        self.scene = scene
        self.on_point = on_point
        self.on_box = on_box
        self.on_scribble = on_scribble
        self._scribbles: Optional[PromptScribbles] = None
        self._nodes: Dict[bool, object] = {}
        self._observers: List[Tuple[object, int]] = []
        self._boxes: Optional[PromptBoxes] = None

    def node(self, positive: bool):
        """The prompt node of one polarity (created, and observed, when missing from the scene)."""
        node = self._nodes.get(positive)
        if node is not None and self.scene.GetNodeByID(node.GetID()) is node:
            return node
        name = "SegmentAI positive points" if positive else "SegmentAI negative points"
        node = add_prompt_node(self.scene, "vtkMRMLMarkupsFiducialNode", name, PROMPT_COLORS[positive])
        node.SetHideFromEditors(False)
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

    @property
    def scribbles(self) -> PromptScribbles:
        """The scribble prompts (markups curves), created on first use."""
        if self._scribbles is None:
            if self.on_scribble is None:
                raise ValueError("PromptPoints was made without on_scribble: scribbles are not handled")
            self._scribbles = PromptScribbles(self.scene, self.on_scribble)
        return self._scribbles

    def _placed(self, node, positive: bool) -> None:
        count = node.GetNumberOfControlPoints()
        if count == 0:
            return
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(count - 1, position)
        self.on_point((position[0], position[1], position[2]), positive)

    def place(self, mode: Union[bool, str, None]) -> None:
        """Place mode: positive points (``True``), negative points (``False``), boxes (:data:`BOX`),
        scribbles (:data:`SCRIBBLE_POSITIVE`, :data:`SCRIBBLE_NEGATIVE`), or back to view mode (``None``)."""
        if mode != BOX and self._boxes is not None:
            self._boxes.stop()  # drops a half-drawn box
        if mode not in SCRIBBLES and self._scribbles is not None:
            self._scribbles.stop()  # drops an unfinished scribble
        if mode is None:
            stop_placement(self.scene)
        elif mode == BOX:
            self.boxes.place()
        elif mode in SCRIBBLES:
            self.scribbles.place(SCRIBBLES[mode])
        else:
            start_placement(self.scene, self.node(bool(mode)))

    def clear(self) -> None:
        """Remove the placed points, boxes and scribbles (the segment keeps its refinement)."""
        for node in self._nodes.values():
            if self.scene.GetNodeByID(node.GetID()) is node:
                node.RemoveAllControlPoints()
        for placed in (self._boxes, self._scribbles):
            if placed is not None:
                placed.clear()

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
        if self._scribbles is not None:
            self._scribbles.close()
            self._scribbles = None
