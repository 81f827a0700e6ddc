"""The panel's steps behind both front ends: prompts, refine with undo, segment locks, training cases, fine-tuning.

One :class:`PanelWorkflow` per scene holds the prompt nodes (points, boxes and scribbles placed in the
views, :mod:`.prompts`), the click refiner, the segment locks (:mod:`.segment_locks`) and starts and
finishes fine-tuning runs. The desktop module and the web app both call it; each passes its own undo
mechanism (an :class:`UndoableApply`): the desktop module Slicer's segment-editor logic
(:class:`~.refinement.EditorApply`), the web app trame-slicer's undo stack, so prompts and the editor's
effects share one history. The lines it returns are what both panels show.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, Tuple

from segmentai_core.errors import InputError

from .box_prompt import roi_box_corners
from .finetune_job import FinetuneJob, training_available
from .prompt_modes import PromptMode
from .prompts import PromptPoints
from .refinement import ClickRefiner, EditorApply
from .segment_locks import LOCK_TAG, SegmentLocks

__all__ = ["LOCK_TAG", "NEEDS_TRAINING", "PanelWorkflow", "PromptMode", "UndoableApply", "default_dataset_dir"]

NEEDS_TRAINING = ("fine-tuning needs SegmentAI's training package (segmentai_train; from a clone: "
                  "pip install -e training)")
"""Why Fine-tune is refused where the training package is missing."""

OnPrompt = Callable[[PromptMode, object], None]


def default_dataset_dir() -> str:
    """The fine-tuning dataset folder beside SegmentAI's user models (``.../segmentai/dataset``)."""
    from segmentai_core.models.registry import default_user_dir

    return str(default_user_dir().parent / "dataset")


class UndoableApply(Protocol):
    """What a front end passes as its undo mechanism (a protocol; :class:`~.refinement.EditorApply` is one).

    Calling it writes a prompt's mask into a segment as one undoable step."""

    def __call__(self, segmentation_node, segment_id: str, mask, volume_node) -> None: ...

    def can_undo(self) -> bool: ...

    def can_redo(self) -> bool: ...

    def undo(self) -> None: ...

    def redo(self) -> None: ...

    def close(self) -> None:
        """Forget the history (the scene is closing)."""


class PanelWorkflow:
    """The panel's steps on the scene of ``logic`` (a :class:`~.logic.SegmentationLogic`).

    Args:
        undo: the front end's undo mechanism (default: Slicer's segment-editor logic, :class:`EditorApply`).
        app_logic: the application logic the default undo mechanism needs (Slicer's, or a test context's).
        session_factory: how refinement sessions are made (default: the installed interactive model).
        tool: recorded in each saved training case's provenance.
    """

    def __init__(self, logic, *, undo: Optional[UndoableApply] = None, app_logic=None,
                 session_factory: Optional[Callable[[], object]] = None, tool: str = "segmentai") -> None:
        self.logic = logic
        self.scene = logic.scene
        self.undo = undo if undo is not None else EditorApply(self.scene, app_logic)
        self.refiner = ClickRefiner(session_factory=session_factory, apply=self.undo)
        self.locks = SegmentLocks()
        self.tool = tool
        self._prompts: Optional[PromptPoints] = None

    # --- prompts ---------------------------------------------------------------------------------

    def prompts(self, on_prompt: OnPrompt) -> PromptPoints:
        """The prompt nodes; ``on_prompt(mode, prompt)`` runs for each placed point (``prompt``: its world RAS
        position), box (the ROI node) and finished scribble (its world RAS points, N × 3)."""
        if self._prompts is None:
            self._prompts = PromptPoints(
                self.scene, lambda position, positive: on_prompt(PromptMode.point(positive), position),
                lambda roi: on_prompt(PromptMode.BOX, roi),
                lambda points, positive: on_prompt(PromptMode.scribble(positive), points))
        return self._prompts

    def place(self, mode, on_prompt: OnPrompt) -> None:
        """Switch the views to placing prompts of ``mode`` (a :class:`PromptMode`, its value, or None: off)."""
        self.prompts(on_prompt).place(mode)

    def reset_prompts(self) -> None:
        """Remove the prompt nodes (before the scene is cleared) and forget the refinement target."""
        if self._prompts is not None:
            self._prompts.close()
            self._prompts = None
        self.refiner.forget()
        self.locks.forget()

    def refine(self, segmentation_node, segment_id: str, volume_node, mode, prompt) -> Tuple[int, str]:
        """Refine one segment with a prompt of ``mode``: a point (world RAS position), a box (a markups ROI
        node, see :mod:`.box_prompt`, or two opposite world RAS corners) or a scribble (world RAS points).

        Refused (InputError) on a locked segment; the other segments are protected. Returns how many voxels
        changed and the panel's line."""
        mode = PromptMode(mode)
        self.locks.check_unlocked(segmentation_node, segment_id)
        if mode.kind == "point":
            changed = self.refiner.add_point(segmentation_node, segment_id, volume_node, prompt, mode.positive)
        elif mode.kind == "box":
            corner1, corner2 = prompt if isinstance(prompt, (tuple, list)) else roi_box_corners(prompt, volume_node)
            changed = self.refiner.add_box(segmentation_node, segment_id, volume_node, corner1, corner2)
        else:
            changed = self.refiner.add_scribble(segmentation_node, segment_id, volume_node, prompt, mode.positive)
        return changed, mode.result_message(changed)

    def last_prompt(self, kind: str):
        """The session's latest prompt of ``kind`` (``"point"``, ``"box"``, ``"scribble"``), voxel indices; or None."""
        prompts = [p for p in self.refiner.prompts if p.kind == kind]
        return prompts[-1] if prompts else None

    # --- undo ------------------------------------------------------------------------------------

    def can_undo_redo(self, redo: bool = False) -> bool:
        return self.undo.can_redo() if redo else self.undo.can_undo()

    def undo_redo(self, redo: bool = False) -> None:
        """Undo (or redo) the last step of the front end's history."""
        if redo and self.undo.can_redo():
            self.undo.redo()
        elif not redo and self.undo.can_undo():
            self.undo.undo()

    # --- segment locks ---------------------------------------------------------------------------

    def locked_segments(self, segmentation_node) -> list:
        return self.locks.locked(segmentation_node)

    def is_locked(self, segmentation_node, segment_id: str) -> bool:
        return self.locks.is_locked(segmentation_node, segment_id)

    def set_locked(self, segmentation_node, segment_id: str, locked: bool, volume_node) -> str:
        """Lock or unlock a segment; returns the panel's line."""
        self.locks.set_locked(segmentation_node, segment_id, locked, volume_node)
        name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        return f"Segment {name} locked" if locked else f"Segment {name} unlocked"

    def toggle_lock(self, segmentation_node, segment_id: str, volume_node) -> str:
        """Lock an unlocked segment or unlock a locked one; returns the panel's line."""
        return self.set_locked(segmentation_node, segment_id, not self.is_locked(segmentation_node, segment_id),
                               volume_node)

    def keep_locks(self, segmentation_node, volume_node, went_forward: bool = True) -> str:
        """After a step of the history: a new step that changed a locked segment is undone. Returns the
        panel's line when one was ('' otherwise)."""
        names = self.locks.enforce(segmentation_node, volume_node, went_forward,
                                   self.undo.undo if self.undo.can_undo() else None)
        return self.locks.message(names) if names else ""

    # --- training cases and fine-tuning ------------------------------------------------------------

    def save_training_case(self, volume_node, segmentation_node, dataset_dir) -> Tuple[str, str]:
        """Add the volume and its corrected segmentation to the dataset; returns the case id and the panel's line."""
        case_id = self.logic.save_training_case(volume_node, segmentation_node, dataset_dir, tool=self.tool)
        return case_id, f"Saved {case_id} in {dataset_dir}"

    @staticmethod
    def training_available() -> bool:
        """Whether Fine-tune can run here (the training package is installed)."""
        return training_available()

    def start_finetune(self, model, dataset_dir, epochs: int = 5, device: str = "auto",
                       runs_dir=None) -> FinetuneJob:
        """Fine-tune ``model`` on the dataset in a child process; poll the returned job from a timer and show
        :meth:`finetune_text`, then call :meth:`finish_finetune`."""
        if not training_available():
            raise InputError(NEEDS_TRAINING)
        return FinetuneJob.start(self.logic.model(model).full_id, dataset_dir, runs_dir,
                                 epochs=max(1, int(epochs)), device=device)

    @staticmethod
    def finetune_text(job: FinetuneJob) -> str:
        """The panel's line for a run: its latest epoch while running, then the new model and its Dice."""
        return job.summary()

    def finish_finetune(self, job: FinetuneJob) -> Tuple[Optional[str], str]:
        """A finished run: a succeeded one's package joins the model list. Returns its ``id@version`` (None when
        the run failed or was cancelled) and the panel's line."""
        if job.state != "succeeded":
            return None, job.error
        model_id = self.add_finetuned_model(job)
        job.model_id = model_id
        return model_id, job.summary()

    def add_finetuned_model(self, job: FinetuneJob) -> str:
        """Import a finished run's package into the model list; returns its ``id@version``."""
        return self.logic.registry.import_package(job.package_dir).full_id

    def close(self) -> None:
        """Forget the refinement history and remove the prompt nodes."""
        self.refiner.close()
        self.undo.close()
        if self._prompts is not None:
            self._prompts.close()
            self._prompts = None
