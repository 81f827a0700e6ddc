"""Overlap and surface-distance metrics between a predicted and a reference label map.

Definitions (per label, the label taken as a binary mask; ``TP/FP/FN/TN`` count voxels):

* ``dice = 2·TP / (|P| + |R|)``, ``iou = TP / (TP + FP + FN)``,
  ``sensitivity = TP / |R|``, ``precision = TP / |P|``,
  ``pixel_accuracy = (TP + TN) / N`` over the whole volume.
* Surface voxels are ``mask XOR erode(mask)`` with face connectivity (6 neighbours); voxels on
  the volume border count as surface. Distances are Euclidean between voxel centres in mm, with
  the real, possibly anisotropic, spacing.
* ``hd95``: the larger of the two directed 95th percentiles (P surface → R surface and back),
  linear interpolation between ranks (NumPy's default, as MONAI does).
* ``assd``: mean of all surface distances of both directions together.
* ``surface_dice``: fraction of the surface voxels of both masks lying within ``tolerance_mm``
  of the other surface (Nikolov et al. 2021, counted in voxels rather than areas, like MONAI).

Edge cases, chosen so that every number is defined:

* A ratio whose denominator is zero is 1.0 ("nothing to find / nothing claimed"). Hence both
  masks empty gives dice = iou = sensitivity = precision = 1.0, and surface distances 0.0,
  surface_dice 1.0.
* Exactly one mask empty gives dice = iou = 0.0, surface distances ``inf`` (``null`` in JSON,
  see :func:`to_jsonable`) and surface_dice 0.0.
* The ``"mean"`` entry averages each metric over the labels; an ``inf`` distance in any label
  makes the mean ``inf``. With no label at all every mean is ``nan`` (``null`` in JSON).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

from .errors import InputError
from .volume import Volume

__all__ = ["METRIC_NAMES", "dice", "evaluate_labelmaps", "to_jsonable"]

METRIC_NAMES = (
    "dice", "iou", "pixel_accuracy", "sensitivity", "precision", "hd95", "assd", "surface_dice",
    "voxels_pred", "voxels_ref",
)
_MEAN_METRICS = METRIC_NAMES[:8]  # voxel counts are not averaged
_FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)
# find_objects allocates one slot per label value up to the maximum: fine up to this size.
_MAX_FAST_LABEL = 1 << 16
_SLAB = 16  # slices per bincount call

Slices = Tuple[slice, slice, slice]


def _ratio(numerator: float, denominator: float) -> float:
    return 1.0 if denominator == 0 else float(numerator) / float(denominator)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two masks (non-zero = foreground); 1.0 when both are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return _ratio(2 * np.count_nonzero(a & b), np.count_nonzero(a) + np.count_nonzero(b))


def _integer_labels(array: np.ndarray, role: str) -> np.ndarray:
    """The label map as integers; a float map is accepted only when its values are whole numbers."""
    if array.dtype == bool:
        return array.view(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if not np.all(np.isfinite(array)) or not np.array_equal(array, np.rint(array)):
        raise InputError(f"the {role} is not a label map: it holds non-integer values")
    small = array.min(initial=0) >= np.iinfo(np.int32).min and array.max(initial=0) <= np.iinfo(np.int32).max
    return array.astype(np.int32 if small else np.int64)


def _histogram(array: np.ndarray) -> Dict[int, int]:
    """Voxel count of every non-zero value.

    bincount is a single pass where np.unique would sort 78 M voxels; it runs slab by slab because
    it converts its input to intp (8 bytes a voxel).
    """
    if array.size == 0:
        return {}
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= _MAX_FAST_LABEL:
        values, counts = np.unique(array, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts) if v != 0}
    counts = np.zeros(high + 1, dtype=np.int64)
    for start in range(0, array.shape[0], _SLAB):
        counts += np.bincount(array[start:start + _SLAB].ravel().astype(np.intp, copy=False), minlength=high + 1)
    return {int(value): int(counts[value]) for value in np.flatnonzero(counts) if value != 0}


def _bounding_boxes(array: np.ndarray, labels: Sequence[int]) -> Dict[int, Optional[Slices]]:
    """Tight bounding box of each label (None when absent), found in one pass where possible."""
    boxes: Dict[int, Optional[Slices]] = {v: None for v in labels}
    fast = [v for v in labels if 0 < v < _MAX_FAST_LABEL]
    if fast and array.size:
        # find_objects reads any integer dtype in place and ignores values <= 0 or > max_label.
        found = ndimage.find_objects(array, max_label=max(fast))
        for value in fast:
            boxes[value] = found[value - 1] if value <= len(found) else None
    for value in labels:
        if value not in fast and value != 0:  # unusual label values: one pass each
            found = ndimage.find_objects((array == value).astype(np.uint8))
            boxes[value] = found[0] if found else None
    return boxes


def _joint_box(a: Optional[Slices], b: Optional[Slices], shape: Sequence[int], margin: int = 1) -> Optional[Slices]:
    if a is None and b is None:
        return None
    boxes = [box for box in (a, b) if box is not None]
    return tuple(
        slice(max(min(box[d].start for box in boxes) - margin, 0), min(max(box[d].stop for box in boxes) + margin, n))
        for d, n in enumerate(shape)
    )  # type: ignore[return-value]


def _surface(mask: np.ndarray) -> np.ndarray:
    # border_value=0: voxels on the edge of the (cropped) array are surface, as on the full volume.
    return mask ^ ndimage.binary_erosion(mask, structure=_FACE_CONNECTIVITY, border_value=0)


def _surface_metrics(pred: np.ndarray, ref: np.ndarray, sampling_kji: Sequence[float], tolerance_mm: float):
    """hd95, assd and surface Dice of two non-empty masks.

    scipy's exact EDT is used rather than monai.metrics: the same definitions (MONAI also erodes
    with scipy's default face connectivity and calls distance_transform_edt with the spacing),
    identical numbers, but no torch import, no one-hot tensors, and it runs on our cropped arrays.
    """
    pred_surface, ref_surface = _surface(pred), _surface(ref)
    # Distance from every voxel to the nearest surface voxel of the other mask, in mm.
    pred_to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=sampling_kji)[pred_surface]
    ref_to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling_kji)[ref_surface]
    hd95 = max(float(np.percentile(pred_to_ref, 95)), float(np.percentile(ref_to_pred, 95)))
    total = pred_to_ref.size + ref_to_pred.size
    assd = (float(pred_to_ref.sum()) + float(ref_to_pred.sum())) / total
    within = np.count_nonzero(pred_to_ref <= tolerance_mm) + np.count_nonzero(ref_to_pred <= tolerance_mm)
    return hd95, assd, float(within / total)


def _label_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    value: int,
    box: Optional[Slices],
    counts: Tuple[int, int],
    sampling_kji: Sequence[float],
    tolerance_mm: float,
) -> Dict[str, Union[float, int]]:
    n_pred, n_ref = counts
    total = pred.size
    if box is None:  # label absent from both
        tp = 0
    else:
        p, r = pred[box] == value, ref[box] == value
        tp = int(np.count_nonzero(p & r))
    fp, fn = n_pred - tp, n_ref - tp
    result: Dict[str, Union[float, int]] = {
        "dice": _ratio(2 * tp, n_pred + n_ref),
        "iou": _ratio(tp, tp + fp + fn),
        "pixel_accuracy": _ratio(total - fp - fn, total),
        "sensitivity": _ratio(tp, n_ref),
        "precision": _ratio(tp, n_pred),
    }
    if n_pred == 0 and n_ref == 0:
        hd95, assd, surface = 0.0, 0.0, 1.0
    elif n_pred == 0 or n_ref == 0:
        hd95, assd, surface = math.inf, math.inf, 0.0
    else:
        hd95, assd, surface = _surface_metrics(p, r, sampling_kji, tolerance_mm)
    result.update(hd95=hd95, assd=assd, surface_dice=surface, voxels_pred=n_pred, voxels_ref=n_ref)
    return result


def evaluate_labelmaps(
    pred: Volume,
    ref: Volume,
    *,
    labels: Optional[Sequence[int]] = None,
    tolerance_mm: float = 1.0,
    pred_name: str = "prediction",
    ref_name: str = "reference",
) -> Dict[Union[int, str], Dict[str, Union[float, int]]]:
    """Compare two label maps on the same grid, label by label (see the module docstring).

    Args:
        pred: predicted label map.
        ref: reference (ground truth) label map.
        labels: label values to evaluate; default: every non-zero value found in either map.
        tolerance_mm: tolerance of the surface Dice, in mm.
        pred_name, ref_name: how the two maps are named in error messages (e.g. file names).

    Returns:
        ``{label_value: {metric: number}, ..., "mean": {metric: number}}`` with the metrics of
        :data:`METRIC_NAMES`; distances in mm, ``inf`` where exactly one mask is empty.

    Raises:
        InputError: the grids differ, or a map is not integer-valued.
    """
    if not pred.geometry.same_grid(ref.geometry):
        raise InputError(
            f"{pred_name} and {ref_name} are on different grids: "
            f"{pred.geometry.describe()} vs {ref.geometry.describe()}; resample one onto the other first"
        )
    if not tolerance_mm > 0:
        raise InputError(f"the surface Dice tolerance must be positive, got {tolerance_mm} mm")
    pred_array = _integer_labels(np.asarray(pred.array), pred_name)
    ref_array = _integer_labels(np.asarray(ref.array), ref_name)
    pred_counts, ref_counts = _histogram(pred_array), _histogram(ref_array)
    if labels is None:
        values: List[int] = sorted(set(pred_counts) | set(ref_counts))
    else:
        values = list(dict.fromkeys(int(v) for v in labels))  # keep order, drop repeats
        if 0 in values:
            raise InputError("label 0 is the background and cannot be evaluated")
    sampling_kji = pred.geometry.spacing_kji  # the EDT's sampling, in array order
    pred_boxes, ref_boxes = _bounding_boxes(pred_array, values), _bounding_boxes(ref_array, values)

    results: Dict[Union[int, str], Dict[str, Union[float, int]]] = {}
    for value in values:
        # Everything a label needs lies inside the joint box of both masks, so cropping first keeps
        # a small organ in a 512×512×300 scan cheap; the margin keeps the erosion border-free.
        box = _joint_box(pred_boxes[value], ref_boxes[value], pred_array.shape)
        counts = (pred_counts.get(value, 0), ref_counts.get(value, 0))
        results[value] = _label_metrics(pred_array, ref_array, value, box, counts, sampling_kji, tolerance_mm)
    results["mean"] = {
        name: (float(np.mean([results[v][name] for v in values])) if values else math.nan) for name in _MEAN_METRICS
    }
    return results


def to_jsonable(results: Dict) -> Dict[str, Dict[str, Union[float, int, None]]]:
    """Metrics with string keys and ``inf``/``nan`` replaced by ``None`` (JSON has neither)."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x

    return {str(key): {name: clean(value) for name, value in metrics.items()} for key, metrics in results.items()}
