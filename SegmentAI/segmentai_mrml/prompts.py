"""Positive and negative click prompts as two markups fiducial nodes, placed in the slice views.

Each polarity has its own node (green: add to the segment, red: remove), observed for
``PointPositionDefinedEvent``: every point the user places calls ``on_point(position, positive)``
with the point's world RAS position. Place mode is switched through the scene's selection and
interaction singletons (MRML only, so the same code runs in Slicer and on slicer-core).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import slicer

__all__ = ["PromptPoints"]

COLORS = {True: (0.2, 0.9, 0.2), False: (1.0, 0.25, 0.25)}


class PromptPoints:
    """The two prompt nodes of ``scene``; ``on_point(position_ras, positive)`` runs for each placed point."""

    def __init__(self, scene, on_point: Callable[[Tuple[float, float, float], bool], None]) -> None:
        self.scene = scene
        self.on_point = on_point
        self._nodes: Dict[bool, object] = {}
        self._observers: List[Tuple[object, int]] = []

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

    def _placed(self, node, positive: bool) -> None:
        count = node.GetNumberOfControlPoints()
        if count == 0:
            return
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(count - 1, position)
        self.on_point((position[0], position[1], position[2]), positive)

    def place(self, positive: Optional[bool]) -> None:
        """Persistent place mode for one polarity's node, or back to view mode (``None``)."""
        interaction = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        selection = self.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        if interaction is None or selection is None:
            return
        if positive is None:
            interaction.SwitchToViewTransformMode()
            return
        node = self.node(positive)
        selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)

    def clear(self) -> None:
        """Remove the placed points (the segment keeps its refinement)."""
        for node in self._nodes.values():
            if self.scene.GetNodeByID(node.GetID()) is node:
                node.RemoveAllControlPoints()

    def close(self) -> None:
        """Stop observing and remove the prompt nodes."""
        for node, tag in self._observers:
            node.RemoveObserver(tag)
        self._observers.clear()
        for node in self._nodes.values():
            if self.scene.GetNodeByID(node.GetID()) is node:
                self.scene.RemoveNode(node)
        self._nodes.clear()
