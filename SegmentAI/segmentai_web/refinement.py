"""Clicks on a segment, through the core's interaction session (MRML and core only, no trame).

The segment in the scene is the truth: before each click the session's target is compared with
the segment, and when they differ (an editor effect, an undo, another segment selected) the
session restarts from the segment's current voxels, with the other segments protected. The
result of a click is written back through ``apply``, which the web app wraps in its undo stack,
so clicks, brush strokes and the other effects share one history.

Candidate for :mod:`segmentai_mrml` once the desktop module gains click refinement (it has no
trame dependency).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
from segmentai_core.errors import InputError
from segmentai_mrml.markups import world_to_node_ras
from segmentai_mrml.segmentation_nodes import segment_array, set_segment_from_array
from segmentai_mrml.volume_nodes import volume_from_node

__all__ = ["ClickRefiner"]

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
        if segmentation_node is None or volume_node is None or not segment_id:
            raise InputError("select a volume and a segment before clicking")
        self._sync(segmentation_node, segment_id, volume_node)
        point = world_to_node_ras(np.asarray([position_ras], dtype=float), volume_node)[0]
        update = self.session.add_point(tuple(float(v) for v in point), positive=positive, space="ras")
        if not update.changed:
            return 0
        region = update.region
        before = segment_array(segmentation_node, segment_id, volume_node)
        changed = int(np.count_nonzero(before[region] != update.mask[region]))
        self._apply(segmentation_node, segment_id, np.array(update.mask), volume_node)
        return changed

    def forget(self) -> None:
        """Drop the session's target (a new volume or segmentation was loaded)."""
        self._volume_id, self._target = None, None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
