"""Validation on a held-aside part of each case, for runs with too few cases to hold one out.

With one or two corrected cases, validating on the training cases measures memorisation: the
in-sample Dice of a single corrected CT reached 0.84 while the unseen half of the same scan got
0.53. Instead each case is cut across its slices (the canonical grid's first axis, the body's
long axis; a structure spanning under 8 slices is not cut): the slab holding the
structure's first :data:`HOLD_FRACTION` along that axis (its inferior end) validates, the rest
trains, and no training patch reaches across the cut, so the validation voxels are never seen.
The slab is the structure's end, the part least like the middle the model trains on: the closest
stand-in within one case for "the next scan", and the figure that picks the checkpoint.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .sampling import CanonicalCase

__all__ = ["HOLD_FRACTION", "MIN_EXTENT_VOXELS", "split_case", "hold_aside"]

HOLD_FRACTION = 0.25
MIN_EXTENT_VOXELS = 8  # a structure spanning fewer slices than this is not cut (validation is in-sample)


def split_case(case: CanonicalCase, fraction: float = HOLD_FRACTION) -> Optional[Tuple[CanonicalCase, CanonicalCase]]:
    """``(training part, validation part)`` of one case, or None when its structure is too small to cut."""
    foreground = case.label > 0
    if not foreground.any():
        return None
    # Across slices only: scans end, and structures continue, along the body's long axis. A cut
    # within the slices (a spleen of 15 slices cut front to back) left a validation part no scan
    # looks like: its Dice fell to 0 as training went on and the first epoch's weights were chosen.
    axis = 0
    hit = np.flatnonzero(foreground.any(axis=tuple(range(1, foreground.ndim))))
    length, start = int(hit[-1] - hit[0] + 1), int(hit[0])
    if length < MIN_EXTENT_VOXELS:
        return None
    cut = start + max(1, int(round(length * fraction)))
    below = [slice(None)] * foreground.ndim
    above = [slice(None)] * foreground.ndim
    below[axis], above[axis] = slice(0, cut), slice(cut, None)
    val = CanonicalCase(f"{case.name} (held-aside {fraction:.0%} of the structure along axis {axis})",
                        np.ascontiguousarray(case.image[tuple(below)]), np.ascontiguousarray(case.label[tuple(below)]))
    train = CanonicalCase(case.name, np.ascontiguousarray(case.image[tuple(above)]),
                          np.ascontiguousarray(case.label[tuple(above)]), case.weight)
    return train, val


def hold_aside(cases: Sequence[CanonicalCase], fraction: float = HOLD_FRACTION) -> Optional[
        Tuple[List[CanonicalCase], List[CanonicalCase]]]:
    """Training and validation parts of every case; None if any case cannot be cut."""
    parts = [split_case(case, fraction) for case in cases]
    if not parts or any(p is None for p in parts):
        return None
    return [p[0] for p in parts], [p[1] for p in parts]
