"""The standard simulated clicker of interactive-segmentation benchmarks (used by training too).

The next click goes to the voxel farthest from the boundary of the largest error region: positive
where the object was missed, negative where background was taken. Distances are in mm with the
grid's spacing, and the volume border counts as boundary.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

__all__ = ["error_components", "next_click", "clicks_to_reach"]

_STRUCTURE = ndimage.generate_binary_structure(3, 1)


def error_components(prediction: np.ndarray, truth: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled error regions: (labels, sizes per label incl. 0, positive flag per label).

    Missed object (false negative) and wrongly taken background (false positive) regions are
    labelled separately, so one component is all of one sign.
    """
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    fn_labels, fn_count = ndimage.label(truth & ~prediction, _STRUCTURE)
    fp_labels, fp_count = ndimage.label(prediction & ~truth, _STRUCTURE)
    labels = fn_labels.astype(np.int32)
    labels[fp_labels > 0] = fp_labels[fp_labels > 0] + fn_count
    sizes = np.bincount(labels.ravel(), minlength=fn_count + fp_count + 1)
    sizes[0] = 0
    positive = np.arange(len(sizes)) <= fn_count
    return labels, sizes, positive


def _farthest_from_boundary(region: np.ndarray, spacing: Sequence[float], rng: Optional[np.random.Generator],
                            randomness: float) -> np.ndarray:
    box = ndimage.find_objects(region.astype(np.uint8))[0]
    sub = np.pad(region[box], 1)
    distance = ndimage.distance_transform_edt(sub, sampling=spacing)[1:-1, 1:-1, 1:-1]
    if rng is not None and randomness > 0 and rng.random() < randomness:
        # Training variety: any voxel of the region, preferring deep ones.
        weights = distance.ravel() ** 2
        index = int(rng.choice(weights.size, p=weights / weights.sum()))
    else:
        index = int(np.argmax(distance))
    local = np.array(np.unravel_index(index, distance.shape))
    return local + np.array([s.start for s in box])


def next_click(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               rng: Optional[np.random.Generator] = None, randomness: float = 0.0,
               ) -> Optional[Tuple[np.ndarray, bool]]:
    """The next click as (array index (k, j, i), positive), or None when the prediction is perfect.

    ``spacing`` is per array axis (k, j, i) in mm. With ``rng`` and ``randomness`` > 0 (training),
    the region is sometimes another error region (chance ∝ size) and the voxel a random deep one.
    """
    labels, sizes, positive = error_components(prediction, truth)
    if sizes.sum() == 0:
        return None
    weighted = sizes * np.prod(spacing)
    if rng is not None and randomness > 0 and rng.random() < randomness:
        chosen = int(rng.choice(len(sizes), p=weighted / weighted.sum()))
    else:
        chosen = int(np.argmax(weighted))
    return _farthest_from_boundary(labels == chosen, spacing, rng, randomness), bool(positive[chosen])


def clicks_to_reach(dice_curve: Sequence[float], threshold: float, max_clicks: int) -> int:
    """NoC@threshold: the first click count whose Dice reaches ``threshold`` (``max_clicks`` if never)."""
    for index, value in enumerate(dice_curve):
        if value >= threshold:
            return index + 1
    return max_clicks


_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def cvpr_click(prediction: np.ndarray, truth: np.ndarray) -> Optional[Tuple[np.ndarray, bool]]:
    """The next click of the CVPR 2025 interactive challenge's protocol (``CVPR25_iter_eval.py``):
    in the largest 26-connected component of the error (prediction ≠ truth), the voxel farthest from
    the component's boundary (Euclidean distance in voxels, the array border counting as boundary);
    positive where the truth is object there. Returns (array index (k, j, i), positive) or None."""
    error = prediction.astype(bool) != truth.astype(bool)
    if not error.any():
        return None
    labels, count = ndimage.label(error, _STRUCTURE_26)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    region = labels == int(np.argmax(sizes))
    box = ndimage.find_objects(region.astype(np.uint8))[0]
    distance = ndimage.distance_transform_edt(np.pad(region[box], 1))[1:-1, 1:-1, 1:-1]
    local = np.array(np.unravel_index(int(np.argmax(distance)), distance.shape))
    kji = local + np.array([s.start for s in box])
    return kji, bool(truth[tuple(kji)])


__all__ += ["cvpr_click"]
