"""Segment locks: a locked segment is never changed by prompts, and an edit that changed it is taken back.

The lock is a segment tag (:data:`LOCK_TAG`), so it is saved with the ``.seg.nrrd``. Prompts on a
locked segment are refused (:meth:`SegmentLocks.check_unlocked`) and every prompt protects the other
segments. Other edits (the segment editor's brush, scissors, islands, ...) are caught afterwards:
:meth:`SegmentLocks.enforce` compares each locked segment with the fingerprint of its voxels taken when
it was locked (or after the last accepted step) and, when a new step changed one, undoes that step
through the front end's own undo mechanism. An undo may change a locked segment: it restores an
earlier state.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Dict, List, Optional

import numpy as np
from segmentai_core.errors import InputError

from .segmentation_nodes import segment_array

__all__ = ["LOCK_TAG", "SegmentLocks"]

LOCK_TAG = "SegmentAI.Locked"


def _segment_ids(segmentation_node) -> List[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


class SegmentLocks:
    """The locked segments of a segmentation and the fingerprints that tell whether one changed."""

    def __init__(self) -> None:
        self._fingerprints: Dict[str, str] = {}  # locked segment -> sha256 of its voxels on the volume's grid

    @staticmethod
    def locked(segmentation_node) -> List[str]:
        """Ids of the locked segments of ``segmentation_node`` (none without one)."""
        if segmentation_node is None:
            return []
        segmentation = segmentation_node.GetSegmentation()
        return [sid for sid in _segment_ids(segmentation_node) if segmentation.GetSegment(sid).HasTag(LOCK_TAG)]

    @staticmethod
    def is_locked(segmentation_node, segment_id: str) -> bool:
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id) if segmentation_node else None
        return bool(segment is not None and segment.HasTag(LOCK_TAG))

    @staticmethod
    def fingerprint(segmentation_node, segment_id: str, volume_node) -> str:
        array = np.ascontiguousarray(segment_array(segmentation_node, segment_id, volume_node), np.uint8)
        return hashlib.sha256(array.tobytes()).hexdigest()

    def set_locked(self, segmentation_node, segment_id: str, locked: bool, volume_node) -> None:
        """Lock or unlock one segment."""
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id) if segmentation_node else None
        if segment is None:
            raise InputError(f"no segment '{segment_id}'")
        if locked:
            segment.SetTag(LOCK_TAG, "1")
            self._fingerprints[segment_id] = self.fingerprint(segmentation_node, segment_id, volume_node)
        else:
            segment.RemoveTag(LOCK_TAG)
            self._fingerprints.pop(segment_id, None)

    def toggle(self, segmentation_node, segment_id: str, volume_node) -> bool:
        """Lock an unlocked segment or unlock a locked one; returns whether it is locked now."""
        locked = not self.is_locked(segmentation_node, segment_id)
        self.set_locked(segmentation_node, segment_id, locked, volume_node)
        return locked

    def check_unlocked(self, segmentation_node, segment_id: str) -> None:
        """Raise InputError (one line for the panel) when ``segment_id`` is locked."""
        if self.is_locked(segmentation_node, segment_id):
            name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
            raise InputError(f"segment '{name}' is locked: unlock it (or select another segment) to refine it")

    def enforce(self, segmentation_node, volume_node, went_forward: bool,
                undo: Optional[Callable[[], None]] = None) -> List[str]:
        """After a step of the undo history: when a new step (``went_forward``) changed a locked segment,
        take it back with ``undo``; returns the names of the locked segments it had changed ([] otherwise).
        Then the fingerprints are those of the segments as they are now."""
        if segmentation_node is None or volume_node is None:
            return []
        locked = self.locked(segmentation_node)
        self._fingerprints = {sid: sha for sid, sha in self._fingerprints.items() if sid in locked}
        changed = [sid for sid in locked if self._fingerprints.get(sid) not in
                   (None, self.fingerprint(segmentation_node, sid, volume_node))]
        if changed and went_forward and undo is not None:
            undo()  # may re-enter through the front end's history observer: the fingerprints are read again below
            segmentation = segmentation_node.GetSegmentation()
            names = [segmentation.GetSegment(sid).GetName() for sid in changed]
        else:
            names = []
        for sid in locked:
            self._fingerprints[sid] = self.fingerprint(segmentation_node, sid, volume_node)
        return names

    def message(self, names: List[str]) -> str:
        """The panel's line when :meth:`enforce` took an edit back."""
        return f"Segment {', '.join(names)} is locked: the edit was taken back"

    def forget(self) -> None:
        """Drop the fingerprints (a new volume or segmentation)."""
        self._fingerprints.clear()
