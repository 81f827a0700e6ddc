"""The SegmentAI panel's handlers: they run on the server's main thread (its asyncio loop).

Trame wiring only: volumes are read by :mod:`segmentai_mrml.storage`, segmentation runs in
:class:`segmentai_mrml.logic.SegmentationLogic` (worker thread, polled here), and prompts, segment
locks, training cases and fine-tuning go through :class:`segmentai_mrml.workflow.PanelWorkflow`, the
desktop panel's workflow, with trame-slicer's undo stack as its undo mechanism (:class:`TrameUndo`).
A user-caused error shows one line in the panel and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
import time
import traceback
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from segmentai_core.errors import InputError, SegmentAIError
from segmentai_mrml.finetune_job import FinetuneJob
from segmentai_mrml.logic import SegmentationLogic
from segmentai_mrml.segment_locks import LOCK_TAG
from segmentai_mrml.segmentation_nodes import segment_array
from segmentai_mrml.storage import load_volume, save_node
from segmentai_mrml.workflow import PanelWorkflow

from .catalog_logic import CatalogLogic
from .config import WebConfig
from .prompt_logic import PromptActions, action
from .state import DEFAULTS
from .uploads import UploadBuffers, check_upload, list_data_images, resolve_data_path, write_upload

__all__ = ["PanelLogic", "TrameUndo"]

log = logging.getLogger("segmentai.web")
SAMPLE_NAME = "SegmentAI sample T1"
POLL_S = 0.25


def _hex(color) -> str:
    return "#" + "".join(f"{int(round(max(0.0, min(1.0, c)) * 255)):02x}" for c in color[:3])


class TrameUndo:
    """The web app's undo mechanism for :class:`PanelWorkflow`: each prompt is one step of trame-slicer's
    segmentation undo stack, shared with the brush and the other effects."""

    def __init__(self, editor) -> None:
        self._editor = editor  # a callable: trame-slicer's segmentation editor

    @property
    def stack(self):
        return self._editor().undo_stack

    def __call__(self, segmentation_node, segment_id, mask, volume_node) -> None:
        from segmentai_mrml.segmentation_nodes import set_segment_from_array
        from trame_slicer.segmentation.segmentation_undo_command import SegmentationLabelMapUndoCommand

        with SegmentationLabelMapUndoCommand.push_state_change(self._editor().active_segmentation):
            set_segment_from_array(segmentation_node, segment_id, mask, volume_node)

    def can_undo(self) -> bool:
        return bool(self.stack is not None and self.stack.can_undo())

    def can_redo(self) -> bool:
        return bool(self.stack is not None and self.stack.can_redo())

    def undo(self) -> None:
        if self.can_undo():
            self.stack.undo()

    def redo(self) -> None:
        if self.can_redo():
            self.stack.redo()

    def close(self) -> None:
        """The stack belongs to trame-slicer's editor: nothing to drop here."""


class PanelLogic(PromptActions):
    """Owns SegmentAI's part of the web app: the segmentation logic, the panel workflow and the jobs."""

    def __init__(self, server, slicer_app, config: WebConfig, layout_state, registry=None) -> None:
        self.server = server
        self.state = server.state
        self.app = slicer_app
        self.config = config
        self.layout_state = layout_state  # trame-slicer's viewer layout state (drawer, volume loaded)
        self.segment_editor_logic = None  # set by the app (trame-slicer's SegmentEditorLogic)
        self.logic = SegmentationLogic(slicer_app.scene, registry)
        self.workflow = PanelWorkflow(self.logic, undo=TrameUndo(lambda: self.editor), tool="segmentai web")
        self.job = None
        self.finetune_job: Optional[FinetuneJob] = None
        self._model_ids: set = set()  # filled by refresh_models
        self._history_index = 0
        self._uploads = UploadBuffers(config.max_upload_bytes)
        self.current_client = lambda: None  # the server binds wslink's id of the calling client
        self._tmp = tempfile.TemporaryDirectory(prefix="segmentai-web-")
        self.state.update(DEFAULTS)
        self._reset_prompts()
        self.state.sai_max_upload_mb = config.max_upload_mb
        self.state.sai_dataset_dir = str(config.dataset_dir)
        self.state.sai_training_available = self.workflow.training_available()
        self.state.sai_data_files = list_data_images(config.data_dir)
        self.state.change("sai_model")(self._on_model_changed)
        self.state.change("sai_click_mode")(self._on_click_mode_changed)
        self.refresh_models()
        self.catalog = CatalogLogic(server, self.logic.registry, self.notify,
                                    lambda ids: self.refresh_models(select=ids[0] if ids else None))
        self._count_cases()

    # --- helpers ---------------------------------------------------------------------------------

    @property
    def editor(self):
        return self.app.segmentation_editor

    @property
    def volume_node(self):
        return self.editor.active_volume_node

    @property
    def segmentation_node(self):
        return self.editor.active_segmentation_node

    def notify(self, text: str, kind: str = "info") -> None:
        self.state.sai_message, self.state.sai_message_type = text, kind
        (log.warning if kind == "error" else log.info)("%s", text)

    def handlers(self) -> Dict[str, object]:
        return {
            "load_sample": self.load_sample, "load_data_file": self.load_data_file, "segment": self.segment,
            "cancel": self.cancel, "toggle_visibility": self.toggle_visibility, "toggle_lock": self.toggle_lock,
            "select_segment": self.select_segment, "add_segment": self.add_segment, "undo": self.undo,
            "redo": self.redo, "save_case": self.save_case, "finetune": self.finetune,
            "finetune_cancel": self.finetune_cancel, "finish_scribble": self.finish_scribble_clicked,
        }

    def triggers(self) -> Dict[str, str]:
        name = self.server.controller.trigger_name
        return {"upload_chunk": name(self.upload_chunk), "upload_refused": name(self.upload_refused),
                "download_seg": name(self.download_seg), "download_nii": name(self.download_nii)}

    # --- models ----------------------------------------------------------------------------------

    def refresh_models(self, select: Optional[str] = None) -> None:
        from segmentai_core.catalog.choices import model_choices

        choices = model_choices(self.logic.registry)  # a multi-part catalog model (TotalSegmentator) is one
        self.state.sai_models = [{"title": title, "value": value} for value, title in choices]
        ids = [value for value, _ in choices]
        self._model_ids = set(ids)  # the server's own list: a client's state cannot add to it
        if select in ids:
            self.state.sai_model = select
        elif self.state.sai_model not in ids:
            self.state.sai_model = self.logic.model().full_id if choices else None
        self._on_model_changed(self.state.sai_model)

    def listed_model(self, value=None) -> str:
        """The client's model choice if it is one the server listed (ids only, never paths)."""
        value = self.state.sai_model if value is None else value
        if not isinstance(value, str) or value not in self._model_ids:
            raise InputError("choose a model from the list")
        return value

    def _on_model_changed(self, sai_model=None, **_) -> None:
        try:
            from segmentai_core.catalog.choices import model_card

            self.state.sai_model_card = model_card(self.listed_model(sai_model), self.logic.registry) \
                if sai_model else ""
        except SegmentAIError as error:
            self.state.sai_model_card = str(error)

    # --- volumes ---------------------------------------------------------------------------------

    @action
    def load_sample(self) -> None:
        from segmentai_core.resources import resources_dir

        self.open_volume(resources_dir() / "SampleData" / "sample_t1.nii.gz", SAMPLE_NAME)

    @action
    def load_data_file(self, relative=None) -> None:
        if relative:
            self.open_volume(resolve_data_path(self.config.data_dir, relative))

    async def upload_chunk(self, files) -> None:
        """Chunks from the page's file input, buffered per client; the empty list ends the upload.

        Never raises: an exception here would reach the client with the server's traceback.
        """
        client = self.current_client()  # read before any await: wslink sets it for this call
        try:
            if files:
                self._uploads.add(client, files)
                return
            self._open_upload(self._uploads.finish(client))
        except SegmentAIError as error:
            self.notify(str(error), "error")
        except Exception:  # noqa: BLE001 - the log gets the traceback, the client one line
            log.error("upload failed:\n%s", traceback.format_exc())
            self.notify("the upload failed (see the server log)", "error")
        finally:
            if not files:
                self._uploads.drop(client)
        self.state.flush()

    @action
    def _open_upload(self, files) -> None:
        if len(files) != 1:
            raise InputError("upload one image file at a time")
        name, data = files[0]
        check_upload(name, data, self.config.max_upload_bytes)
        folder = Path(tempfile.mkdtemp(dir=self._tmp.name))
        self.open_volume(write_upload(name, data, folder))

    def upload_refused(self, name: str, size: float) -> None:
        self.notify(f"{name} is {float(size) / 2**20:.1f} MB; this server accepts up to "
                    f"{self.config.max_upload_mb:.0f} MB", "error")

    def open_volume(self, path: Path, name: Optional[str] = None) -> None:
        """Replace the scene's content by the volume at ``path``; the file is checked before anything changes."""
        from segmentai_core.io import read_volume

        if self.job is not None and not self.job.done:
            raise InputError("wait for the running segmentation (or cancel it) before opening another volume")
        read_volume(path)  # one-line error for unreadable, truncated or non-3D files, before the scene changes
        self.state.sai_click_mode = "off"
        self._reset_prompts()
        self._history_index = 0
        self.app.scene.Clear()
        node = load_volume(self.app.scene, path, name or Path(path).name.split(".")[0])
        self.app.display_manager.show_volume(node, do_reset_views=True)
        self.segment_editor_logic.on_volume_changed(node)
        self.layout_state.data.is_volume_loaded = True
        self.state.sai_volume_name = node.GetName()
        self.refresh_segments()
        self.notify(f"Opened {node.GetName()}", "success")

    # --- segmentation ----------------------------------------------------------------------------

    @action
    def segment(self) -> None:
        if self.volume_node is None:
            raise InputError("open a volume first")
        if self.job is not None and not self.job.done:
            return
        self.state.sai_click_mode = "off"
        self.job = self.logic.start(self.volume_node, self.listed_model(), self.config.device,
                                    into=self.segmentation_node, precision=self.config.precision)
        self.state.sai_busy, self.state.sai_progress, self.state.sai_progress_text = True, 0.0, "Starting"
        self.state.sai_message = ""
        asyncio.get_event_loop().create_task(self._watch_segmentation(self.job))

    async def _watch_segmentation(self, job) -> None:
        started = time.time()
        while not self.logic.poll(job):
            fraction, message = job.progress
            with self.state:
                self.state.sai_progress, self.state.sai_progress_text = round(100 * fraction, 1), message
            await asyncio.sleep(POLL_S)
        with self.state:
            self.state.sai_busy = False
            if job.state == "succeeded":
                self.editor.set_active_segmentation(job.segmentation_node, self.volume_node)
                self.workflow.refiner.forget()
                self.refresh_segments()
                self.notify(f"Segmented with {job.model_id} in {time.time() - started:.1f} s", "success")
            else:
                self.notify(job.error or "Segmentation did not finish; nothing was changed.",
                            "warning" if job.state == "cancelled" else "error")

    def cancel(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()
            self.state.sai_progress_text = "Cancelling..."

    # --- segments --------------------------------------------------------------------------------

    def segment_voxels(self) -> Dict[str, int]:
        """Voxel count of every segment of the active segmentation on the volume's grid."""
        node, volume = self.segmentation_node, self.volume_node
        if node is None or volume is None:
            return {}
        segmentation = node.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        return {sid: int(segment_array(node, sid, volume).sum()) for sid in ids}

    def refresh_segments(self) -> None:
        node, volume = self.segmentation_node, self.volume_node
        rows = []
        if node is not None and volume is not None:
            voxel_ml = float(np.prod(volume.GetSpacing())) / 1000.0
            segmentation = node.GetSegmentation()
            for sid, voxels in self.segment_voxels().items():
                segment = segmentation.GetSegment(sid)
                rows.append({"id": sid, "name": segment.GetName(), "color": _hex(segment.GetColor()),
                             "voxels": voxels, "ml": f"{voxels * voxel_ml:.1f}",
                             "visible": bool(self.editor.get_segment_visibility(sid)),
                             "locked": bool(segment.HasTag(LOCK_TAG))})
        self.state.sai_segments = rows
        self.state.sai_active_segment = self.editor.get_active_segment_id() if rows else ""
        stack = self.editor.undo_stack
        self.state.sai_can_undo = bool(stack and stack.can_undo())
        self.state.sai_can_redo = bool(stack and stack.can_redo())

    @action
    def toggle_visibility(self, segment_id: str) -> None:
        self.editor.set_segment_visibility(segment_id, not self.editor.get_segment_visibility(segment_id))
        self.refresh_segments()

    @action
    def select_segment(self, segment_id: str) -> None:
        """Make ``segment_id`` the segment that clicks, boxes and the editor's effects change."""
        self.editor.set_active_segment_id(segment_id)
        self.refresh_segments()

    @action
    def add_segment(self) -> None:
        """Add an empty segment (undoable, as in the segment editor) and select it."""
        if self.segmentation_node is None:
            raise InputError("open a volume first")
        self.editor.add_empty_segment()
        self.refresh_segments()

    def locked_segments(self) -> List[str]:
        return self.workflow.locked_segments(self.segmentation_node)

    @action
    def toggle_lock(self, segment_id: str) -> None:
        """Lock or unlock a segment: a locked one is never changed by clicks, boxes or the editor's effects."""
        self.workflow.toggle_lock(self.segmentation_node, segment_id, self.volume_node)
        self.refresh_segments()

    def on_history_changed(self) -> None:
        """Keep locked segments as they were: a new editor step (brush, scissors, islands, ...) or a redo
        that changed one is taken back at once. An undo may change them (it restores an earlier state)."""
        stack = self.editor.undo_stack
        index = stack.index() if stack is not None else 0
        went_forward, self._history_index = index > self._history_index, index
        message = self.workflow.keep_locks(self.segmentation_node, self.volume_node, went_forward)
        if message:
            self.notify(message, "warning")

    # --- undo (the prompts themselves: prompt_logic.PromptActions) ------------------------------

    @action
    def undo(self) -> None:
        self.workflow.undo_redo(redo=False)
        self.refresh_segments()

    @action
    def redo(self) -> None:
        self.workflow.undo_redo(redo=True)
        self.refresh_segments()

    # --- training --------------------------------------------------------------------------------

    def _count_cases(self) -> None:
        from segmentai_core.dataset import list_cases

        try:
            self.state.sai_cases = len(list_cases(self.config.dataset_dir))
        except (SegmentAIError, OSError):
            self.state.sai_cases = 0

    @action
    def save_case(self) -> str:
        """Add the volume and its corrected segmentation to the training dataset; returns the case id."""
        case_id, message = self.workflow.save_training_case(self.volume_node, self.segmentation_node,
                                                            self.config.dataset_dir)
        self._count_cases()
        self.notify(message, "success")
        return case_id

    @action
    def finetune(self) -> None:
        if self.finetune_job is not None and not self.finetune_job.done:
            return
        epochs = max(1, int(float(self.state.sai_ft_epochs or 1)))
        self.finetune_job = self.workflow.start_finetune(self.listed_model(), self.config.dataset_dir, epochs,
                                                         self.config.device, runs_dir=self.config.runs_dir)
        self.state.sai_ft_running, self.state.sai_ft_progress = True, 0.0
        self.state.sai_ft_text, self.state.sai_ft_curve = self.workflow.finetune_text(self.finetune_job), ""
        asyncio.get_event_loop().create_task(self._watch_finetune(self.finetune_job))

    async def _watch_finetune(self, job: FinetuneJob) -> None:
        epochs_seen = 0
        while True:
            job.poll()
            with self.state:
                self.state.sai_ft_progress = round(100 * job.fraction, 1)
                if not job.done:
                    self.state.sai_ft_text = self.workflow.finetune_text(job)
                if len(job.history) != epochs_seen:
                    epochs_seen = len(job.history)
                    png = job.curve_png()
                    if png:
                        self.state.sai_ft_curve = "data:image/png;base64," + base64.b64encode(png).decode()
            if job.done:
                break
            await asyncio.sleep(0.5)
        with self.state:
            self.state.sai_ft_running = False
            try:
                model_id, message = self.workflow.finish_finetune(job)
            except SegmentAIError as error:
                model_id, message = None, str(error)
            self.state.sai_ft_text = message
            if model_id:
                self.refresh_models(select=model_id)
                self.notify(message, "success")
            else:
                self.notify(message, "warning" if job.state == "cancelled" else "error")

    def finetune_cancel(self) -> None:
        if self.finetune_job is not None:
            self.finetune_job.cancel()

    # --- downloads -------------------------------------------------------------------------------

    def _segmentation_bytes(self, suffix: str) -> bytes:
        volume, node = self.volume_node, self.segmentation_node
        if volume is None or node is None:
            raise InputError("nothing to download: open a volume and segment it first")
        path = Path(tempfile.mkdtemp(dir=self._tmp.name)) / f"segmentation{suffix}"
        if suffix == ".seg.nrrd":
            save_node(node, path)
            node.SetAndObserveStorageNodeID(None)  # the temporary file is not the node's home
        else:
            from segmentai_core.io import write_labelmap
            from segmentai_mrml.segmentation_nodes import labelmap_from_segmentation

            write_labelmap(labelmap_from_segmentation(node, volume), path)
        return path.read_bytes()

    def download_seg(self):
        return self._download(".seg.nrrd")

    def download_nii(self):
        return self._download(".nii.gz")

    def _download(self, suffix: str):
        try:
            return self.server.protocol.addAttachment(self._segmentation_bytes(suffix))
        except SegmentAIError as error:
            self.notify(str(error), "error")
            self.state.flush()
            return None

    # --- status (for monitoring and tests) -------------------------------------------------------

    def status(self) -> dict:
        """Server-side facts: the volume, each segment's voxel count, the undo state and the dataset size."""
        volume = self.volume_node
        stack = self.editor.undo_stack
        labelmap_sha = ""
        if volume is not None and self.segmentation_node is not None:
            import hashlib

            from segmentai_mrml.segmentation_nodes import labelmap_from_segmentation

            array = np.ascontiguousarray(labelmap_from_segmentation(self.segmentation_node, volume).array,
                                         dtype=np.uint8)
            labelmap_sha = hashlib.sha256(array.tobytes()).hexdigest()
        return {
            "volume": volume.GetName() if volume is not None else None,
            "segments": {s["name"]: s["voxels"] for s in self.state.sai_segments},
            "locked": self.locked_segments(),
            "active_segment": self.editor.get_active_segment_id() if volume is not None else "",
            "last_box": self.last_box,
            "last_scribble": self.last_scribble,
            "click_mode": self.state.sai_click_mode,
            "scribble_points": int(self.state.sai_scribble_points or 0),
            "voxels": self.segment_voxels(),
            "labelmap_sha256": labelmap_sha,
            "busy": bool(self.state.sai_busy),
            "can_undo": bool(stack and stack.can_undo()),
            "can_redo": bool(stack and stack.can_redo()),
            "cases": int(self.state.sai_cases),
            "dataset": str(self.config.dataset_dir),
            "model": self.state.sai_model,
            "message": self.state.sai_message,
            "models": sorted(self._model_ids),
            **self.catalog.status(),
        }

    def close(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()
        if self.finetune_job is not None:
            self.finetune_job.cancel()
        self.catalog.cancel()
        self.workflow.close()
        self._tmp.cleanup()
