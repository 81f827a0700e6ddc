"""A voxel-wise intensity gate for CT models fine-tuned on few cases, applied on the model's grid.

Hounsfield units are calibrated, so what the corrected voxels of a structure measured is a prior no
network trained on one half-scan has learnt as firmly: a liver model trained on the upper abdomen
took the colon and the gallbladder beside the lower liver (median 9 HU) for liver (44 HU), in one
component with it, which the component gate (:func:`~.postprocess.drop_off_intensity`) cannot
split. The gate sets a class's probability to background wherever the 3x3x3 median of the model-grid
image lies outside the class's HU fences (the median, not the voxel: CT noise at 3 mm would
otherwise punch holes through the organ). Vessels and other enclosed voxels it removes come back
with the hole filling that follows. A fine-tuning run keeps the gate only where it raised the
held-aside validation Dice (``segmentai_train.finetune``); the manifest's
``postprocessing.intensity_gate`` holds the fences, in HU, per label value.
"""

from __future__ import annotations

from typing import Mapping, Tuple

import numpy as np
from scipy import ndimage

from ..errors import ModelError
from .postprocess import bounding_box

__all__ = ["normalized_ranges", "outside_fences", "gate_probabilities", "gate_labels"]

Ranges = Mapping[int, Tuple[float, float]]  # class index (channel) -> (low, high) in the image's units


def normalized_ranges(gate_hu: Mapping[int, Tuple[float, float]], label_values, normalization: Mapping) -> dict:
    """The gate's HU fences per label value as fences per class index in the network input's units.

    Only a ``ct_window`` normalisation maps HU to the input exactly (``(hu - lo) / (hi - lo)``);
    fences beyond the window are clipped to it, as the image is.
    """
    if normalization.get("type") != "ct_window":
        raise ModelError("postprocessing.intensity_gate needs the ct_window normalisation (HU fences)")
    lo, hi = (float(v) for v in normalization["window"])
    index = {int(value): c + 1 for c, value in enumerate(label_values)}
    out = {}
    for value, (low, high) in gate_hu.items():
        if int(value) not in index:
            raise ModelError(f"postprocessing.intensity_gate names label {value}, which the model does not have")
        out[index[int(value)]] = ((min(max(low, lo), hi) - lo) / (hi - lo), (min(max(high, lo), hi) - lo) / (hi - lo))
    return out


def outside_fences(image: np.ndarray, mask: np.ndarray, low: float, high: float) -> np.ndarray:
    """Voxels of ``mask`` whose 3x3x3 median image intensity lies outside [low, high] (same shape)."""
    outside = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask, margin=1)
    if box is None:
        return outside
    median = ndimage.median_filter(np.asarray(image[box], dtype=np.float32), size=3, mode="nearest")
    outside[box] = mask[box] & ((median < low) | (median > high))
    return outside


def gate_probabilities(probabilities: np.ndarray, image: np.ndarray, ranges: Ranges) -> int:
    """Move each gated class's probability to the background where the image is outside its fences.

    ``probabilities`` (classes, k, j, i), class 0 the background, in place; ``image`` the network's
    input on the same grid. Returns the voxels the gate took from the classes that would win them.
    """
    winner = np.argmax(probabilities, axis=0)
    taken = 0
    for c, (low, high) in ranges.items():
        outside = outside_fences(image, winner == c, low, high)
        count = int(np.count_nonzero(outside))
        if count:
            probabilities[0][outside] += probabilities[c][outside]
            probabilities[c][outside] = 0
            taken += count
    return taken


def gate_labels(labels: np.ndarray, image: np.ndarray, ranges: Ranges) -> int:
    """The same gate on a class-index label map (in place): gated voxels become background."""
    taken = 0
    for c, (low, high) in ranges.items():
        outside = outside_fences(image, labels == c, low, high)
        labels[outside] = 0
        taken += int(np.count_nonzero(outside))
    return taken
