"""Undoable segment edits through Slicer's C++ segment-editor logic (``vtkSlicerSegmentEditorLogic``).

Refinement (the interaction session) and manual corrections change one segment at a time; going
through the segment-editor logic gives them Slicer's own multi-level undo/redo and masking, so
edits made here and in Slicer's Segment Editor share one history.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import slicer

from .segmentation_nodes import oriented_image
from .volume_nodes import geometry_from_node

__all__ = ["SegmentEditor"]


class SegmentEditor:
    """Edits the segments of ``segmentation_node`` on the grid of ``volume_node``, with undo.

    Args:
        scene: the MRML scene holding both nodes.
        segmentation_node: the segmentation to edit.
        volume_node: the source volume (its grid is the editing grid).
        app_logic: the application logic (optional outside Slicer).
        max_undo: how many states undo keeps.
    """

    def __init__(self, scene, segmentation_node, volume_node, app_logic=None, max_undo: int = 20) -> None:
        self.scene = scene
        self.segmentation_node = segmentation_node
        self.volume_node = volume_node
        self.editor_node = slicer.vtkMRMLSegmentEditorNode()
        self.editor_node.SetName("SegmentAI editor")
        self.editor_node.SetHideFromEditors(True)
        scene.AddNode(self.editor_node)
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        if app_logic is not None:
            self.logic.SetMRMLApplicationLogic(app_logic)
        self.logic.SetMaximumNumberOfUndoStates(max_undo)
        self.logic.SetSegmentEditorNode(self.editor_node)
        self.logic.SetSegmentationNode(segmentation_node)
        self.logic.SetSourceVolumeNode(volume_node)

    def replace_segment(self, segment_id: str, mask: np.ndarray, other_segments_locked: bool = True) -> None:
        """Set ``segment_id`` to the binary ``[k, j, i]`` ``mask`` (volume grid) as one undoable step.

        With ``other_segments_locked`` the edit neither changes another segment nor takes its voxels
        (Slicer's "editable area: outside all segments", "modify other segments: none"); otherwise
        the segment takes the voxels it needs from the others, as the Segment Editor's default does.
        """
        self.logic.SetCurrentSegmentID(segment_id)
        self.editor_node.SetSelectedSegmentID(segment_id)
        segmentation_class, editor_class = slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLSegmentEditorNode
        if other_segments_locked:
            self.editor_node.SetMaskMode(segmentation_class.EditAllowedOutsideAllSegments)
            self.editor_node.SetOverwriteMode(editor_class.OverwriteNone)
        else:
            self.editor_node.SetMaskMode(segmentation_class.EditAllowedEverywhere)
            self.editor_node.SetOverwriteMode(editor_class.OverwriteAllSegments)
        self.logic.SaveStateForUndo()
        modifier = oriented_image((np.asarray(mask) > 0).astype(np.uint8), geometry_from_node(self.volume_node))
        self.logic.ModifySegmentByLabelmap(self.segmentation_node, segment_id, modifier,
                                           self.logic.ModificationModeSet, False, False)

    def can_undo(self) -> bool:
        return bool(self.logic.CanUndo())

    def can_redo(self) -> bool:
        return bool(self.logic.CanRedo())

    def undo(self) -> None:
        """Restore the state before the last edit."""
        self.logic.Undo()

    def redo(self) -> None:
        """Re-apply the last undone edit."""
        self.logic.Redo()

    def close(self, scene: Optional[object] = None) -> None:
        """Forget the undo history and remove the editor's parameter node from the scene."""
        self.logic.ClearUndoState()
        self.logic.SetSegmentationNode(None)
        self.logic.SetSourceVolumeNode(None)
        (scene or self.scene).RemoveNode(self.editor_node)
