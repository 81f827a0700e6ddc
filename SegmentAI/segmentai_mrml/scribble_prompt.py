"""Scribble prompts from markups curves (``vtkMRMLMarkupsCurveNode``) drawn in the slice views.

A scribble is an open, linear curve: the user clicks its points one after another and finishes it
as Slicer finishes any curve (double-click or right-click), which ends place mode. When place mode
ends on a curve of two or more points, ``on_scribble(points_world, positive)`` runs once with its
control points (world RAS, parent transforms applied), and, while scribble mode is on, a fresh curve
is ready for the next stroke. :meth:`PromptScribbles.finish` ends a stroke without leaving place mode
(the web panel's Finish stroke). Object scribbles are green, background ones red, as the points.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import slicer
from segmentai_core.errors import InputError

from .markups import start_placement
from .prompt_modes import PromptMode
from .prompt_nodes import PromptNodeList, add_prompt_node

__all__ = ["PromptScribbles", "defined_points_world"]


def defined_points_world(node) -> np.ndarray:
    """World RAS positions (N, 3) of the curve's placed points (not the preview point under the mouse)."""
    points = []
    for index in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(index) == node.PositionDefined:
            position = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(index, position)
            points.append(position)
    return np.asarray(points, dtype=float).reshape(-1, 3)


class PromptScribbles(PromptNodeList):
    """Scribble curves of ``scene``; ``on_scribble(points_world (N, 3), positive)`` runs per finished curve,
    ``on_point(count)`` (optional) each time a point of the stroke being drawn is placed."""

    def __init__(self, scene, on_scribble: Callable[[np.ndarray, bool], None],
                 on_point: Optional[Callable[[int], None]] = None) -> None:
        super().__init__(scene)  # pending: the curve being drawn
        self.on_scribble = on_scribble
        self.on_point = on_point
        self._positive: Optional[bool] = None  # polarity while scribble mode is on, else None
        self._interaction_tag: Optional[Tuple[object, int]] = None

    def new_node(self, positive: bool):
        """A new linear curve of one polarity."""
        mode = PromptMode.scribble(positive)
        node = add_prompt_node(self.scene, "vtkMRMLMarkupsCurveNode", mode.node_name, mode.color)
        node.SetCurveTypeToLinear()  # the stroke is the polyline the user clicked, not a spline
        return self._keep(node, (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                 lambda caller, event: self._point_defined(caller)))

    def _point_defined(self, node) -> None:
        if self.on_point is not None and node is self.pending:
            self.on_point(self.pending_points)

    @property
    def pending_points(self) -> int:
        """How many points the stroke being drawn has (0 without one)."""
        return len(defined_points_world(self.pending)) if self._present(self.pending) else 0

    def place(self, positive: bool) -> None:
        """Draw scribbles of one polarity until :meth:`stop`; an unfinished one of the other is dropped."""
        if self.pending is not None and self._positive != positive:
            self._remove(self.pending)
            self.pending = None
        self._positive = bool(positive)
        self._observe_interaction()
        if not self._present(self.pending):
            self.pending = self.new_node(self._positive)
        # Not persistent: finishing a curve ends place mode, which is how a scribble is known to be complete.
        start_placement(self.scene, self.pending, persistent=False)

    def stop(self) -> None:
        """Stop drawing scribbles and drop an unfinished one (the caller switches the mouse mode)."""
        self._positive = None
        if self._present(self.pending):
            self._remove(self.pending)
        self.pending = None

    def _observe_interaction(self) -> None:
        if self._interaction_tag is not None:
            return
        interaction = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        if interaction is not None:
            tag = interaction.AddObserver(slicer.vtkMRMLInteractionNode.InteractionModeChangedEvent,
                                          lambda caller, event: self._mode_changed(caller))
            self._interaction_tag = (interaction, tag)

    def _mode_changed(self, interaction) -> None:
        """Place mode ended: a pending curve of two or more points is a finished scribble."""
        if interaction.GetCurrentInteractionMode() == interaction.Place:
            return
        node, positive = self.pending, self._positive
        if positive is None or not self._present(node):
            return
        points = defined_points_world(node)
        if len(points) < 2:
            return  # a single click is no stroke: keep the curve, the user may go on drawing it
        self.pending = None
        node.SetLocked(True)
        self.on_scribble(points, positive)
        if self._positive is not None:  # still in scribble mode: ready for the next stroke
            self.place(self._positive)

    def finish(self) -> None:
        """Finish the stroke being drawn and stay in scribble mode: ``on_scribble`` runs with its points. When
        it raises (a refusal), the stroke is kept, to be finished later; a stroke of one point is refused."""
        node, positive = self.pending, self._positive
        if positive is None or not self._present(node):
            raise InputError("choose Object or Background scribble and click the stroke's points first")
        points = defined_points_world(node)
        if len(points) < 2:
            raise InputError("a scribble needs two or more points: click them on one slice, then Finish stroke")
        self.on_scribble(points, positive)
        if self.pending is node:
            self.pending = None
            node.SetLocked(True)
            if self._positive is not None:
                self.place(self._positive)

    def close(self) -> None:
        """Stop observing and remove every scribble curve."""
        self._positive = None
        if self._interaction_tag is not None:
            interaction, tag = self._interaction_tag
            interaction.RemoveObserver(tag)
            self._interaction_tag = None
        self.remove_all()
