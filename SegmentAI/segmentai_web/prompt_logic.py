"""The panel's prompts drawn in the slice views: object/background clicks, 2D boxes and scribbles.

Each kind of prompt has its own markups node, placed through trame-slicer's markups logic while its
click mode (``sai_click_mode``) is on: clicks and box corners are point lists, a scribble is a linear
open curve whose points the user clicks one after another on one slice and ends with "Finish
stroke". Every prompt goes through :class:`~segmentai_mrml.refinement.ClickRefiner`, which writes
through the panel's undoable ``apply``. A user-caused error shows one line and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from typing import Dict, Optional, Sequence

import numpy as np
from segmentai_core.errors import InputError, SegmentAIError
from segmentai_mrml.prompt_nodes import add_prompt_node
from segmentai_mrml.scribble_prompt import defined_points_world

__all__ = ["PromptActions", "action", "SCRIBBLES"]

log = logging.getLogger("segmentai.web")

SCRIBBLES: Dict[str, bool] = {"scribble-positive": True, "scribble-negative": False}
"""Scribble click modes and their polarity (True: object, False: background)."""
KINDS: Dict[str, object] = {"positive": True, "negative": False, "box": "box", **{m: m for m in SCRIBBLES}}
"""Click mode -> the key of its markups node (True / False: clicks, "box": corners, a scribble mode)."""
NAMES = {True: "SegmentAI object", False: "SegmentAI background", "box": "SegmentAI box",
         "scribble-positive": "SegmentAI object scribble", "scribble-negative": "SegmentAI background scribble"}
GREEN, RED = (0.2, 0.9, 0.3), (0.95, 0.25, 0.25)
COLORS = {True: GREEN, False: RED, "box": (1.0, 0.85, 0.1), "scribble-positive": GREEN, "scribble-negative": RED}


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

    Uses the panel's ``app``, ``state``, ``refiner``, ``job``, ``editor``, ``volume_node``,
    ``segmentation_node``, ``notify``, ``refresh_segments`` and ``_check_unlocked``.
    """

    _markups: Dict[object, object]
    last_box: Optional[dict]
    last_scribble: Optional[dict]

    def _reset_prompts(self) -> None:
        """Forget the prompt nodes and the latest prompts (a new volume clears the scene)."""
        self._markups = {}  # mode key (see KINDS) -> its markups node
        self.last_box = None  # the latest box prompt, voxel indices (for status and tests)
        self.last_scribble = None  # the latest scribble, voxel indices (for status and tests)
        self.state.sai_scribble_points = 0

    def _present(self, node) -> bool:
        return node is not None and self.app.scene.GetNodeByID(node.GetID()) is node

    def _markups_node(self, kind):
        """The markups node that clicks of one kind go to (a key of :data:`KINDS`' values)."""
        node = self._markups.get(kind)
        if not self._present(node):
            from slicer import vtkMRMLMarkupsNode

            scribble = kind in SCRIBBLES
            node = add_prompt_node(self.app.scene, "vtkMRMLMarkupsCurveNode" if scribble else
                                   "vtkMRMLMarkupsFiducialNode", NAMES[kind], COLORS[kind])
            if scribble:
                node.SetCurveTypeToLinear()  # the stroke is the polyline the user clicked, not a spline
            node.AddObserver(vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                             lambda caller, _event, k=kind: self._on_point_placed(caller, k))
            self._markups[kind] = node
        return node

    def _clear_markups(self, kind) -> None:
        node = self._markups.get(kind)
        if self._present(node):
            node.RemoveAllControlPoints()

    def _on_click_mode_changed(self, sai_click_mode="off", **_) -> None:
        try:
            kind = KINDS.get(sai_click_mode)
            if kind is not None and self.volume_node is not None:
                self.app.markups_logic.place_node(self._markups_node(kind), persistent=True)
                self.state.sai_predictor = self.refiner.predictor_name
            else:
                self.app.markups_logic.disable_place_mode()
            for other in ("box", *SCRIBBLES):
                if other != kind:
                    self._clear_markups(other)  # a half-drawn box or unfinished stroke is dropped
            stroke = self._markups.get(kind) if kind in SCRIBBLES else None
            self.state.sai_scribble_points = len(defined_points_world(stroke)) if self._present(stroke) else 0
        except Exception as error:  # noqa: BLE001
            log.error("click mode: %s", traceback.format_exc())
            self.notify(f"Could not switch the click mode: {error}", "error")

    def _on_point_placed(self, node, kind) -> None:
        count = node.GetNumberOfControlPoints()
        if count == 0:
            return
        if kind in SCRIBBLES:
            # A VTK event, not a page event: update the page from the loop, where the state is flushed.
            asyncio.get_event_loop().create_task(self._count_stroke(node))
            return
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(count - 1, position)
        if kind == "box":
            if count == 1:
                self.notify("Box: click the opposite corner on the same slice", "info")
                return
            first = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(count - 2, first)
            asyncio.get_event_loop().create_task(self._refine_box(node, first, position))
            return
        # Leave the VTK event first, then refine (the page shows the busy bar meanwhile).
        asyncio.get_event_loop().create_task(self._refine(position, kind))

    async def _count_stroke(self, node) -> None:
        with self.state:
            self.state.sai_scribble_points = len(defined_points_world(node)) if self._present(node) else 0

    async def _refine(self, position, positive: bool) -> None:
        with self.state:
            self.state.sai_refining = True
        await asyncio.sleep(0)
        with self.state:
            self.add_point(position, positive)
            self.state.sai_refining = False

    async def _refine_box(self, node, corner1, corner2) -> None:
        with self.state:
            self.state.sai_refining = True
        await asyncio.sleep(0)
        with self.state:
            node.RemoveAllControlPoints()  # the next two clicks draw the next box
            self.add_box(corner1, corner2)
            self.state.sai_refining = False

    def _check_idle(self, what: str) -> None:
        if self.job is not None and not self.job.done:
            raise InputError(f"wait for the segmentation to finish before {what}")

    @action
    def add_box(self, corner1_ras, corner2_ras) -> int:
        """Refine the selected segment with a box from two opposite world RAS corners (one slice: a 2D box)."""
        self._check_idle("drawing a box")
        segment_id = self.editor.get_active_segment_id()
        self._check_unlocked(segment_id)
        changed = self.refiner.add_box(self.segmentation_node, segment_id, self.volume_node, corner1_ras, corner2_ras)
        prompts = [p for p in self.refiner.session.prompts if p.kind == "box"]
        if prompts:
            lo, hi = np.minimum(*prompts[-1].array), np.maximum(*prompts[-1].array)
            self.last_box = {"segment": segment_id, "ijk_min": lo.tolist(), "ijk_max": hi.tolist()}
        self.refresh_segments()
        self.notify(f"Box: {changed} voxels changed" if changed else "Box: no change", "info")
        return changed

    @action
    def add_point(self, position_ras, positive: bool = True) -> int:
        """Refine the selected segment with one click at world RAS ``position_ras``."""
        self._check_idle("clicking")
        segment_id = self.editor.get_active_segment_id()
        self._check_unlocked(segment_id)
        changed = self.refiner.add_point(self.segmentation_node, segment_id, self.volume_node, position_ras, positive)
        self.refresh_segments()
        kind = "object" if positive else "background"
        self.notify(f"{kind.capitalize()} click: {changed} voxels changed" if changed else
                    f"{kind.capitalize()} click: no change", "info")
        return changed

    def _scribble(self, points_ras: Sequence[Sequence[float]], positive: bool) -> int:
        """Refine the selected segment with a scribble through world RAS ``points_ras`` (N × 3)."""
        points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
        if len(points) < 2:
            raise InputError("a scribble needs two or more points: click them on one slice, then Finish stroke")
        self._check_idle("drawing a scribble")
        segment_id = self.editor.get_active_segment_id()
        self._check_unlocked(segment_id)
        changed = self.refiner.add_scribble(self.segmentation_node, segment_id, self.volume_node, points, positive)
        prompts = [p for p in self.refiner.session.prompts if p.kind == "scribble"]
        if prompts:
            self.last_scribble = {"segment": segment_id, "positive": bool(prompts[-1].positive),
                                  "ijk": prompts[-1].array.tolist()}
        self.refresh_segments()
        kind = "Object" if positive else "Background"
        self.notify(f"{kind} scribble: {changed} voxels changed" if changed else f"{kind} scribble: no change",
                    "info")
        return changed

    @action
    def add_scribble(self, points_ras: Sequence[Sequence[float]], positive: bool = True) -> int:
        """Refine the selected segment with a scribble through world RAS ``points_ras`` (N × 3, N >= 2)."""
        return self._scribble(points_ras, positive)

    @action
    def finish_scribble(self) -> int:
        """Refine the selected segment with the stroke drawn in the current scribble mode, then clear it."""
        mode = self.state.sai_click_mode
        if mode not in SCRIBBLES:
            raise InputError("choose Object or Background scribble and click the stroke's points first")
        node = self._markups.get(mode)
        points = defined_points_world(node) if self._present(node) else np.zeros((0, 3))
        changed = self._scribble(points, SCRIBBLES[mode])  # a refusal keeps the stroke, to finish it later
        node.RemoveAllControlPoints()  # the next clicks draw the next stroke
        self.state.sai_scribble_points = 0
        return changed

    async def finish_scribble_clicked(self) -> None:
        """The Finish stroke button: show the busy bar while the stroke refines."""
        with self.state:
            self.state.sai_refining = True
        await asyncio.sleep(0)
        with self.state:
            self.finish_scribble()
            self.state.sai_refining = False
