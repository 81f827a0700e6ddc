"""The web panel's prompts: trame wiring over the shared prompt nodes of :mod:`segmentai_mrml.workflow`.

The click mode (``sai_click_mode``) is a :class:`~segmentai_mrml.prompt_modes.PromptMode` value (or
``"off"``); the workflow's prompt nodes (the desktop panel's: points, ROI boxes, scribble curves) take
the clicks, and every prompt refines the selected segment through the workflow, as one step of the
editor's undo stack. A scribble's points are clicked one after another on one slice and end with
"Finish stroke". A user-caused error shows one line and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from typing import Optional

from segmentai_core.errors import InputError, SegmentAIError
from segmentai_mrml.prompt_modes import PromptMode

__all__ = ["PromptActions", "action"]

log = logging.getLogger("segmentai.web")
DOING = {"point": "clicking", "box": "drawing a box", "scribble": "drawing a scribble"}


def action(method):
    """Run a handler; a SegmentAIError becomes the panel's message, a bug a short message plus a log entry."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except SegmentAIError as error:
            self.notify(str(error), "error")
        except Exception as error:  # noqa: BLE001 - keep the server alive, log the traceback
            log.error("%s failed:\n%s", method.__name__, traceback.format_exc())
            # No exception text to the client: it may name server paths.
            self.notify(f"Internal error in {method.__name__} ({type(error).__name__}; see the server log)", "error")
        return None

    return wrapper


class PromptActions:
    """Clicks, boxes and scribbles of the web panel; mixed into :class:`~.panel_logic.PanelLogic`.

    Uses the panel's ``state``, ``workflow``, ``job``, ``editor``, ``volume_node``, ``segmentation_node``,
    ``notify`` and ``refresh_segments``.
    """

    last_box: Optional[dict]
    last_scribble: Optional[dict]
    _finishing = False

    def _reset_prompts(self) -> None:
        """Remove the prompt nodes and forget the latest prompts (a new volume clears the scene)."""
        self.workflow.reset_prompts()
        self.last_box = None  # the latest box prompt, voxel indices (for status and tests)
        self.last_scribble = None  # the latest scribble, voxel indices (for status and tests)
        self.state.sai_scribble_points = 0

    def _prompts(self):
        prompts = self.workflow.prompts(self._on_prompt)
        prompts.on_scribble_point = self._on_stroke_point
        return prompts

    def _on_click_mode_changed(self, sai_click_mode="off", **_) -> None:
        try:
            mode = PromptMode.parse(sai_click_mode) if self.volume_node is not None else None
            prompts = self._prompts()
            prompts.place(mode)
            if mode is not None:
                self.state.sai_predictor = self.workflow.refiner.predictor_name
            scribbling = mode is not None and mode.kind == "scribble"
            self.state.sai_scribble_points = prompts.scribbles.pending_points if scribbling else 0
        except Exception as error:  # noqa: BLE001
            log.error("click mode: %s", traceback.format_exc())
            self.notify(f"Could not switch the click mode: {error}", "error")

    def _on_stroke_point(self, count: int) -> None:
        # A VTK event, not a page event: update the page from the loop, where the state is flushed.
        asyncio.get_event_loop().create_task(self._count_stroke(count))

    async def _count_stroke(self, count: int) -> None:
        with self.state:
            self.state.sai_scribble_points = count

    def _on_prompt(self, mode: PromptMode, prompt) -> None:
        """A prompt was placed (a VTK event): refine from the loop, the page showing the busy bar meanwhile.
        A stroke ended by Finish stroke refines at once, so that a refusal keeps it."""
        if self._finishing:
            self._refine(mode, prompt)
            return
        asyncio.get_event_loop().create_task(self._refine_later(mode, prompt))

    async def _refine_later(self, mode: PromptMode, prompt) -> None:
        with self.state:
            self.state.sai_refining = True
        await asyncio.sleep(0)
        with self.state:
            self.refine(mode, prompt)
            self.state.sai_refining = False

    @action
    def refine(self, mode, prompt) -> int:
        """Refine the selected segment with one prompt (see :meth:`segmentai_mrml.workflow.PanelWorkflow.refine`)."""
        return self._refine(PromptMode(mode), prompt)

    def _refine(self, mode: PromptMode, prompt) -> int:
        if self.job is not None and not self.job.done:
            raise InputError(f"wait for the segmentation to finish before {DOING[mode.kind]}")
        segment_id = self.editor.get_active_segment_id()
        changed, message = self.workflow.refine(self.segmentation_node, segment_id, self.volume_node, mode, prompt)
        latest = self.workflow.last_prompt(mode.kind)
        if mode.kind == "box" and latest is not None:
            lo, hi = latest.array.min(axis=0), latest.array.max(axis=0)
            self.last_box = {"segment": segment_id, "ijk_min": lo.tolist(), "ijk_max": hi.tolist()}
        elif mode.kind == "scribble" and latest is not None:
            self.last_scribble = {"segment": segment_id, "positive": bool(latest.positive),
                                  "ijk": latest.array.tolist()}
        self.refresh_segments()
        self.notify(message, "info")
        return changed

    @action
    def finish_scribble(self) -> None:
        """Refine the selected segment with the stroke drawn in the current scribble mode (a refusal keeps it)."""
        mode = PromptMode.parse(self.state.sai_click_mode)
        if mode is None or mode.kind != "scribble":
            raise InputError("choose Object or Background scribble and click the stroke's points first")
        self._finishing = True
        try:
            self._prompts().scribbles.finish()
        finally:
            self._finishing = False
        self.state.sai_scribble_points = 0

    async def finish_scribble_clicked(self) -> None:
        """The Finish stroke button: show the busy bar while the stroke refines."""
        with self.state:
            self.state.sai_refining = True
        await asyncio.sleep(0)
        with self.state:
            self.finish_scribble()
            self.state.sai_refining = False
