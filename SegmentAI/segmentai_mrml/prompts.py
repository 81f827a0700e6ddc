"""The panel's prompts placed in the slice views: positive/negative points, boxes and scribbles.

Each point polarity has its own markups fiducial node (green: add to the segment, red: remove),
observed for ``PointPositionDefinedEvent``: every point the user places calls
``on_point(position, positive)`` with the point's world RAS position. Boxes are markups ROI nodes
(:class:`~.box_prompt.PromptBoxes`): ``on_box(roi_node)`` runs once per box. Scribbles are open curves
(:class:`~.scribble_prompt.PromptScribbles`): ``on_scribble(points_world, positive)`` runs once per finished
curve. One placement mode at a time (a :class:`~.prompt_modes.PromptMode`), switched through the scene's
selection and interaction singletons (MRML only, so the same code runs in Slicer, on slicer-core and
behind the web app).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

import slicer

from .box_prompt import PromptBoxes
from .markups import start_placement, stop_placement
from .prompt_modes import PromptMode
from .prompt_nodes import add_prompt_node
from .scribble_prompt import PromptScribbles

__all__ = ["PromptMode", "PromptPoints"]


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
        self.on_scribble_point: Optional[Callable[[int], None]] = None  # see PromptScribbles.on_point
        self._scribbles: Optional[PromptScribbles] = None
        self._nodes: Dict[bool, object] = {}
        self._observers: List[Tuple[object, int]] = []
        self._boxes: Optional[PromptBoxes] = None

    def node(self, positive: bool):
        """The prompt node of one polarity (created, and observed, when missing from the scene)."""
        node = self._nodes.get(positive)
        if node is not None and self.scene.GetNodeByID(node.GetID()) is node:
            return node
        mode = PromptMode.point(positive)
        node = add_prompt_node(self.scene, "vtkMRMLMarkupsFiducialNode", mode.node_name, mode.color)
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
            self._scribbles = PromptScribbles(self.scene, self.on_scribble, self.on_scribble_point)
        return self._scribbles

    def _placed(self, node, positive: bool) -> None:
        count = node.GetNumberOfControlPoints()
        if count == 0:
            return
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(count - 1, position)
        self.on_point((position[0], position[1], position[2]), positive)

    def place(self, mode: Union[PromptMode, str, None]) -> None:
        """Place prompts of ``mode`` (a :class:`PromptMode` or its value), or back to view mode (``None``,
        ``"off"``). Leaving box or scribble mode drops a half-drawn box or an unfinished scribble."""
        mode = PromptMode.parse(mode)
        kind = mode.kind if mode is not None else None
        if kind != "box" and self._boxes is not None:
            self._boxes.stop()
        if kind != "scribble" and self._scribbles is not None:
            self._scribbles.stop()
        if mode is None:
            stop_placement(self.scene)
        elif kind == "box":
            self.boxes.place()
        elif kind == "scribble":
            self.scribbles.place(mode.positive)
        else:
            start_placement(self.scene, self.node(mode.positive))

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
