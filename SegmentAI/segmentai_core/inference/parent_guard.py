"""The parent guard: a model fine-tuned on its parent's own label keeps its answer near the parent's.

Fine-tuning a brain model on one corrected head moved the surface where the user corrected it, but it
also grew pieces the parent never had: two false pieces at the skull base and in the neck of an
unseen head, 23-30 mm from the brain, joined to the brainstem (HD95 5.9 -> 19.4 mm; see
docs/benchmarks-finetune.md). The corrected cases say how far the true boundary lies from the
parent's answer: on ROBEX's head (2 mm model grid) 16,176 corrected voxels lay outside it, at most
11.8 mm beyond, 99.9 % of them within 7.5 mm. So the fine-tuned package records that reach
(``postprocessing.parent_guard``: the parent's id and ``distance_mm``), and the engine, after the
network, has the parent segment the same volume and sends to the background every voxel of the
model's grid farther than the reach (plus one voxel's diagonal, the restore's interpolation) from
the parent's answer. Fine-tuning can still move the boundary within that reach, and shrink the
answer anywhere.

Only binary parents are guarded by, and only packages that keep the parent's own labels.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Tuple

import numpy as np

__all__ = ["GUARD_PERCENTILE", "parent_foreground", "allowed_region", "apply_guard", "correction_distance"]

GUARD_PERCENTILE = 99.9
"""Of the corrected voxels' distances to the parent's answer: the guard's reach (robust to a few
stray corrected voxels, as a maximum is not)."""


def parent_foreground(probabilities: np.ndarray, largest: bool) -> np.ndarray:
    """The parent's object on the model's grid: ``p1 > 0.5`` of (2, k, j, i) probabilities, its
    largest 26-connected piece when the parent keeps only that."""
    from .postprocess import _largest_only

    foreground = probabilities[1] > 0.5
    if largest and foreground.any():
        drop = _largest_only(foreground)
        if drop is not None:
            foreground &= ~drop
    return foreground


def _distance_beyond(foreground: np.ndarray, spacing_kji: Sequence[float]) -> np.ndarray:
    """Per voxel, its distance in mm to the nearest voxel of ``foreground`` (0 inside)."""
    from scipy import ndimage

    if not foreground.any():
        return np.full(foreground.shape, np.inf, dtype=np.float64)
    return ndimage.distance_transform_edt(~foreground, sampling=tuple(float(s) for s in spacing_kji))


def allowed_region(foreground: np.ndarray, spacing_kji: Sequence[float], distance_mm: float) -> np.ndarray:
    """Voxels within ``distance_mm`` of the parent's foreground."""
    return _distance_beyond(foreground, spacing_kji) <= distance_mm


def apply_guard(probabilities: np.ndarray, allowed: np.ndarray) -> int:
    """Make every voxel outside ``allowed`` certain background, in place; returns how many were
    foreground (arg-max not 0) before."""
    outside = ~allowed
    removed = int(np.count_nonzero(outside & (probabilities[1:].max(axis=0) > probabilities[0])))
    probabilities[1:, outside] = 0.0
    probabilities[0, outside] = 1.0
    return removed


def correction_distance(pairs: Iterable[Tuple[np.ndarray, np.ndarray]], spacing_kji: Sequence[float],
                        percentile: float = GUARD_PERCENTILE) -> Tuple[float, float, int]:
    """How far beyond the parent's answer the corrected labels reach.

    ``pairs``: (parent foreground, corrected label > 0) per case, on one grid of ``spacing_kji`` mm.
    Returns (the ``percentile`` of the corrected voxels' distances, their maximum, how many corrected
    voxels lie outside the parent's answer). The reach is at least one voxel's largest side.
    """
    distances = [_distance_beyond(parent, spacing_kji)[label] for parent, label in pairs]
    pooled = np.concatenate(distances) if distances else np.zeros(0)
    pooled = pooled[np.isfinite(pooled)]
    if not pooled.size:
        return float(max(spacing_kji)), 0.0, 0
    reach = max(float(np.percentile(pooled, percentile)), float(max(spacing_kji)))
    return reach, float(pooled.max()), int(np.count_nonzero(pooled > 0))
