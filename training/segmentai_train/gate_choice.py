"""Whether a fine-tuned CT package gets the voxel-wise intensity gate, decided on its validation.

The gate (:mod:`segmentai_core.inference.intensity_gate`) is a prior from the corrected voxels' HU;
it helps where the network took a neighbour of another density for the structure (a liver model
that took the colon beside the lower liver: held-aside Dice 0.774 -> 0.806, unseen lower half
0.778 -> 0.823) and would hurt a structure of mixed density. So each class's gate is tried on the
validation parts with the engine's postprocessing after it (component gate, largest component,
holes), and kept only if the mean Dice gains at least :data:`MIN_GAIN`, as nnU-Net keeps a
postprocessing step only where its cross-validation gains.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

from segmentai_core.inference.intensity_gate import gate_labels, normalized_ranges
from segmentai_core.inference.postprocess import clean_labels, drop_off_intensity

from .validation import case_dice

__all__ = ["MIN_GAIN", "choose_intensity_gate"]

MIN_GAIN = 0.005  # validation Dice a class's gate must gain to be kept


def _postprocessed_dice(predictions: Sequence[np.ndarray], cases, num_classes: int, images, gates: Mapping,
                        components: Mapping, postprocessing: Mapping) -> float:
    scores = []
    for predicted, case, image in zip(predictions, cases, images):
        labels = predicted.copy()
        gate_labels(labels, image, gates)
        if components:
            drop_off_intensity(labels, image, components)
        clean_labels(labels, range(1, num_classes), largest=bool(postprocessing.get("largest_component")),
                     holes=bool(postprocessing.get("fill_holes")),
                     slice_holes=bool(postprocessing.get("fill_slice_holes")))
        scores.append(float(np.mean(case_dice(labels, case.label, num_classes))))
    return float(np.mean(scores))


def choose_intensity_gate(predict_classes: Callable[[np.ndarray], np.ndarray], cases, num_classes: int,
                          fences_hu: Mapping[int, Tuple[float, float]], label_values: Sequence[int],
                          normalization: Mapping, postprocessing: Mapping) -> Tuple[Dict[int, Tuple[float, float]],
                                                                                  float, float]:
    """``(gate, Dice without, Dice with)``: the label values (of ``fences_hu``) whose gate is kept.

    ``cases``: validation :class:`~.sampling.CanonicalCase` s (normalised images, class-index labels);
    ``predict_classes``: the network's class map of one normalised image (thresholds applied).
    """
    if not fences_hu or not cases or normalization.get("type") != "ct_window":
        return {}, float("nan"), float("nan")
    gates = normalized_ranges(fences_hu, label_values, normalization)  # class index -> fences in input units
    by_index = {c + 1: int(v) for c, v in enumerate(label_values)}
    components = gates  # the component gate uses the same fences (data_plan writes both from them)
    predictions = [predict_classes(case.image) for case in cases]
    images = [case.image for case in cases]
    before = best = _postprocessed_dice(predictions, cases, num_classes, images, {}, components, postprocessing)
    kept: Dict[int, Tuple[float, float]] = {}
    for c in sorted(gates):
        trial = {**kept, c: gates[c]}
        score = _postprocessed_dice(predictions, cases, num_classes, images, trial, components, postprocessing)
        if score >= best + MIN_GAIN:
            kept, best = trial, score
    return {by_index[c]: tuple(fences_hu[by_index[c]]) for c in kept}, before, best
