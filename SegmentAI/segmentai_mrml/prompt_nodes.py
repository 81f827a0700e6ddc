"""Markups nodes made for prompts (points, boxes, scribbles): how they look and how they are kept.

Prompt nodes are not data: they are not saved with the scene, their labels are hidden, object
prompts are green and background prompts red
(:mod:`.prompt_modes`). :class:`PromptNodeList` keeps the nodes of one kind
of prompt with the observers added on them, and removes them cleanly.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

__all__ = ["add_prompt_node", "PromptNodeList"]


def add_prompt_node(scene, class_name: str, name: str, color: Tuple[float, float, float]):
    """A new markups node of ``class_name`` shown in ``color``, not saved with the scene, labels hidden."""
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetSaveWithScene(False)  # prompts, not data
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*color)
        display.SetColor(*color)
        display.SetPointLabelsVisibility(False)
        display.SetPropertiesLabelVisibility(False)
    return node


class PromptNodeList:
    """The nodes of one kind of prompt: ``pending`` is the one being drawn, the others are finished."""

    def __init__(self, scene) -> None:
        self.scene = scene
        self.pending = None
        self._nodes: List[object] = []
        self._observers: List[Tuple[object, int]] = []

    def _keep(self, node, observer: Optional[Tuple[int, object]] = None):
        """Remember ``node`` (and observe it: ``observer`` = (event, callback)); returns the node."""
        if observer is not None:
            self._observers.append((node, node.AddObserver(*observer)))
        if not any(n is node for n in self._nodes):
            self._nodes.append(node)
        return node

    def _present(self, node) -> bool:
        return node is not None and self.scene.GetNodeByID(node.GetID()) is node

    def _remove(self, node) -> None:
        for observed, tag in [o for o in self._observers if o[0] is node]:
            observed.RemoveObserver(tag)
            self._observers.remove((observed, tag))
        self._nodes = [n for n in self._nodes if n is not node]
        if self._present(node):
            self.scene.RemoveNode(node)

    def clear(self) -> None:
        """Remove the finished prompts (the segment keeps its refinement)."""
        for node in [n for n in self._nodes if n is not self.pending]:
            self._remove(node)

    def remove_all(self) -> None:
        """Remove every node, the pending one included."""
        for node in list(self._nodes):
            self._remove(node)
        self.pending = None

    @property
    def nodes(self) -> List[object]:
        """The finished prompt nodes, oldest first."""
        return [n for n in self._nodes if n is not self.pending]
