"""Clicks on a segment, through the core's interaction session (MRML and core only, no trame).

The segment in the scene is the truth: before each click the session's target is compared with
the segment, and when they differ (an editor effect, an undo, another segment selected) the
session restarts from the segment's current voxels, with the other segments protected. The
result of a click is written back through ``apply``: the web app wraps it in trame-slicer's undo
stack, the desktop module in :class:`EditorApply` (Slicer's segment-editor logic), so clicks,
brush strokes and the other effects share one history.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
from segmentai_core.errors import InputError

from .editing import SegmentEditor
from .markups import world_to_node_ras
from .segmentation_nodes import segment_array, set_segment_from_array
from .volume_nodes import volume_from_node

__all__ = ["ClickRefiner", "EditorApply"]

ApplyMask = Callable[[object, str, np.ndarray, object], None]


class ClickRefiner:
    """Refines one segment at a time with positive/negative clicks (RAS world coordinates).

    Args:
        session_factory: builds an :class:`~segmentai_core.interaction.InteractionSession`
            (default: the installed interactive model, else the classical fallback).
        apply: writes a new mask into the segment (default: replace the segment's voxels).
    """

    def __init__(self, session_factory: Optional[Callable[[], object]] = None,
                 apply: Optional[ApplyMask] = None) -> None:
        self._session_factory = session_factory
        self._apply = apply or set_segment_from_array
        self._session = None
        self._volume_id: Optional[str] = None
        self._target: Optional[tuple] = None

    @property
    def session(self):
        if self._session is None:
            if self._session_factory is not None:
                self._session = self._session_factory()
            else:
                from segmentai_core.interaction import InteractionSession

                self._session = InteractionSession()
        return self._session

    @property
    def prompts(self) -> list:
        """The prompts of the current session, in voxel indices (none before the first one)."""
        return list(self._session.prompts) if self._session is not None else []

    @property
    def predictor_name(self) -> str:
        return str(getattr(self.session.predictor, "name", "interactive model"))

    def _sync(self, segmentation_node, segment_id: str, volume_node) -> np.ndarray:
        """Make the session's image and target match the scene; returns the segment's current mask."""
        session = self.session
        if self._volume_id != volume_node.GetID():
            session.set_image(volume_from_node(volume_node))
            self._volume_id, self._target = volume_node.GetID(), None
        current = segment_array(segmentation_node, segment_id, volume_node)
        target = (segmentation_node.GetID(), segment_id)
        if self._target != target or not np.array_equal(session.mask, current):
            others = np.zeros_like(current)
            segmentation = segmentation_node.GetSegmentation()
            for index in range(segmentation.GetNumberOfSegments()):
                other_id = segmentation.GetNthSegmentID(index)
                if other_id != segment_id:
                    others |= segment_array(segmentation_node, other_id, volume_node)
            session.set_target(current, protected=others)
            self._target = target
        return current

    def add_point(self, segmentation_node, segment_id: str, volume_node, position_ras: Sequence[float],
                  positive: bool = True) -> int:
        """Refine ``segment_id`` with a click at world RAS ``position_ras``; returns how many voxels changed."""
        self._check(segmentation_node, segment_id, volume_node, "clicking")
        point = world_to_node_ras(np.asarray([position_ras], dtype=float), volume_node)[0]
        update = self.session.add_point(tuple(float(v) for v in point), positive=positive, space="ras")
        return self._commit(update, segmentation_node, segment_id, volume_node)

    def add_box(self, segmentation_node, segment_id: str, volume_node, corner1_ras: Sequence[float],
                corner2_ras: Sequence[float]) -> int:
        """Refine ``segment_id`` with a box from two opposite world RAS corners (on one slice: a 2D box);
        returns how many voxels changed."""
        self._check(segmentation_node, segment_id, volume_node, "drawing a box")
        corners = world_to_node_ras(np.asarray([corner1_ras, corner2_ras], dtype=float), volume_node)
        update = self.session.add_box(tuple(map(float, corners[0])), tuple(map(float, corners[1])), space="ras")
        return self._commit(update, segmentation_node, segment_id, volume_node)

    def add_scribble(self, segmentation_node, segment_id: str, volume_node, points_ras: Sequence[Sequence[float]],
                     positive: bool = True) -> int:
        """Refine ``segment_id`` with a scribble through world RAS ``points_ras`` (N × 3, N >= 2); returns
        how many voxels changed."""
        self._check(segmentation_node, segment_id, volume_node, "drawing a scribble")
        points = world_to_node_ras(np.asarray(points_ras, dtype=float).reshape(-1, 3), volume_node)
        update = self.session.add_scribble(points, positive=positive, space="ras")
        return self._commit(update, segmentation_node, segment_id, volume_node)

    def _check(self, segmentation_node, segment_id: str, volume_node, action: str) -> None:
        """Refuse a prompt without a volume and segment; make the session match the scene."""
        if segmentation_node is None or volume_node is None or not segment_id:
            raise InputError(f"select a volume and a segment before {action}")
        self._sync(segmentation_node, segment_id, volume_node)

    def _commit(self, update, segmentation_node, segment_id: str, volume_node) -> int:
        """Write the session's new mask into the segment; returns how many voxels changed."""
        if not update.changed:
            return 0
        before = segment_array(segmentation_node, segment_id, volume_node)
        changed = int(np.count_nonzero(before[update.region] != update.mask[update.region]))
        self._apply(segmentation_node, segment_id, np.array(update.mask), volume_node)
        return changed

    def forget(self) -> None:
        """Drop the session's target (a new volume or segmentation was loaded)."""
        self._volume_id, self._target = None, None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class EditorApply:
    """A :class:`ClickRefiner` ``apply`` that writes through :class:`~.editing.SegmentEditor`.

    Each click becomes one step of Slicer's segment-editor undo stack, with the other segments
    locked; the editor follows the segmentation and volume of the latest click.
    """

    def __init__(self, scene, app_logic=None) -> None:
        self.scene = scene
        self.app_logic = app_logic
        self.editor: Optional[SegmentEditor] = None

    def editor_for(self, segmentation_node, volume_node) -> SegmentEditor:
        """The editor of this segmentation on this volume's grid (a new one, with a new history, if they changed)."""
        editor = self.editor
        if editor is None or editor.segmentation_node is not segmentation_node or editor.volume_node is not volume_node:
            self.close()
            editor = self.editor = SegmentEditor(self.scene, segmentation_node, volume_node, self.app_logic)
        return editor

    def __call__(self, segmentation_node, segment_id: str, mask: np.ndarray, volume_node) -> None:
        self.editor_for(segmentation_node, volume_node).replace_segment(segment_id, mask, other_segments_locked=True)

    def can_undo(self) -> bool:
        return self.editor is not None and self.editor.can_undo()

    def can_redo(self) -> bool:
        return self.editor is not None and self.editor.can_redo()

    def undo(self) -> None:
        if self.can_undo():
            self.editor.undo()

    def redo(self) -> None:
        if self.can_redo():
            self.editor.redo()

    def close(self) -> None:
        """Forget the history and remove the editor's parameter node (if it is still in the scene)."""
        if self.editor is not None:
            editor, self.editor = self.editor, None
            if self.scene.GetNodeByID(editor.editor_node.GetID()) is editor.editor_node:
                editor.close()
