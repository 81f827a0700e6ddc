"""The panel's Refine, Save-as-training-case and Fine-tune steps, for the desktop module.

One object per scene holds the click refiner (writing through the segment-editor logic, so each
point, box or scribble is one undoable step with the other segments locked), the prompt nodes (points,
boxes and scribbles), and starts fine-tuning runs. The web app uses the same pieces (:mod:`.refinement`,
:mod:`.finetune_job`, :meth:`.logic.SegmentationLogic.save_training_case`) with its own undo stack.
"""

from __future__ import annotations

from typing import Callable, Optional

from segmentai_core.errors import InputError

from .box_prompt import roi_box_corners
from .finetune_job import FinetuneJob, training_available
from .prompts import PromptPoints
from .refinement import ClickRefiner, EditorApply

__all__ = ["PanelWorkflow", "default_dataset_dir"]


def default_dataset_dir() -> str:
    """The fine-tuning dataset folder beside SegmentAI's user models (``.../segmentai/dataset``)."""
    from segmentai_core.models.registry import default_user_dir

    return str(default_user_dir().parent / "dataset")


class PanelWorkflow:
    """Refinement with undo, training cases and fine-tuning on the scene of ``logic`` (a SegmentationLogic)."""

    def __init__(self, logic, app_logic=None, session_factory: Optional[Callable[[], object]] = None) -> None:
        self.logic = logic
        self.scene = logic.scene
        self.editor_apply = EditorApply(self.scene, app_logic)
        # session_factory: how refinement sessions are made (default: the installed interactive model).
        self.refiner = ClickRefiner(session_factory=session_factory, apply=self.editor_apply)
        self._prompts: Optional[PromptPoints] = None

    def prompts(self, on_point: Callable, on_box: Optional[Callable] = None,
                on_scribble: Optional[Callable] = None) -> PromptPoints:
        """The prompt nodes; ``on_point(position_ras, positive)`` runs for each placed point, ``on_box(roi_node)``
        for each placed box, ``on_scribble(points_world, positive)`` for each finished scribble."""
        if self._prompts is None:
            self._prompts = PromptPoints(self.scene, on_point, on_box, on_scribble)
        return self._prompts

    def refine(self, segmentation_node, segment_id: str, volume_node, position_ras, positive: bool = True) -> int:
        """Refine one segment with a point at world RAS ``position_ras``; returns how many voxels changed."""
        return self.refiner.add_point(segmentation_node, segment_id, volume_node, position_ras, positive)

    def refine_box(self, segmentation_node, segment_id: str, volume_node, roi_node) -> int:
        """Refine one segment with a box from a markups ROI (see :mod:`.box_prompt`).

        Returns how many voxels changed."""
        corner1, corner2 = roi_box_corners(roi_node, volume_node)
        return self.refiner.add_box(segmentation_node, segment_id, volume_node, corner1, corner2)

    def refine_scribble(self, segmentation_node, segment_id: str, volume_node, points_world,
                        positive: bool = True) -> int:
        """Refine one segment with a scribble through world RAS ``points_world``; returns how many voxels changed."""
        return self.refiner.add_scribble(segmentation_node, segment_id, volume_node, points_world, positive)

    def can_undo_redo(self, redo: bool = False) -> bool:
        return self.editor_apply.can_redo() if redo else self.editor_apply.can_undo()

    def undo_redo(self, redo: bool = False) -> None:
        """Undo (or redo) the last refinement step through the segment-editor logic."""
        if redo:
            self.editor_apply.redo()
        else:
            self.editor_apply.undo()

    def save_training_case(self, volume_node, segmentation_node, dataset_dir) -> str:
        """Add the volume and its corrected segmentation to the dataset; returns the case id."""
        return self.logic.save_training_case(volume_node, segmentation_node, dataset_dir, tool="SegmentAI for Slicer")

    def start_finetune(self, model, dataset_dir, epochs: int = 5, device: str = "auto") -> FinetuneJob:
        """Fine-tune ``model`` on the dataset in a child process; poll the returned job from a timer."""
        if not training_available():
            raise InputError("fine-tuning needs SegmentAI's training package (segmentai_train)")
        return FinetuneJob.start(self.logic.model(model).full_id, dataset_dir, epochs=int(epochs), device=device)

    def add_finetuned_model(self, job: FinetuneJob) -> str:
        """Import a finished run's package into the model list; returns its ``id@version``."""
        return self.logic.registry.import_package(job.package_dir).full_id

    def close(self) -> None:
        """Forget the refinement history and remove the prompt nodes."""
        self.refiner.close()
        self.editor_apply.close()
        if self._prompts is not None:
            self._prompts.close()
            self._prompts = None
