"""Data-aware set-up of a fine-tuning run: what the corrected cases are, and the grid to learn them on.

A parent model brings its own preprocessing (the bundled brain model: T1 MRI, per-image percentile
scaling, 2 mm). Copied blindly onto other data it is wrong: a CT scaled by each image's own
percentiles maps the same tissue to different values in every scan (the upper and lower half of
one CT already differ), and a 2 mm grid with an 80-voxel patch sees 16 cm, less than an abdominal
organ. :func:`fingerprint` measures the cases in their own intensities and millimetres;
:func:`plan` turns that into the new package's modality, normalisation, spacing and
postprocessing, with a sentence per decision that the run prints and the manifest keeps.

The rules, nnU-Net's where it has one:
  * **CT** when the dataset's channel is named CT, or the images hold Hounsfield units (air near
    -1000, whole numbers). CT is normalised with one fixed window for every scan: clip to the
    0.5-99.5 percentiles of the labelled voxels (nnU-Net's ``CTNormalization`` clip), widened to at
    least the soft-tissue window (with only the structure's own window a liver model trained on one
    half-scan took the pelvic muscles), scaled to 0..1 (the range the parent's first layer learnt on).
  * **Spacing** for a new label set: isotropic, so that the labelled structure (its median extent
    over cases) fits in 85 % of one patch, never finer than the scans themselves nor than 1 mm,
    never coarser than 4 mm, and fine enough that the smallest structure spans 12 voxels.
    Same labels as the parent: the parent's grid (its task, its scale).
  * **Postprocessing**: keep-largest-component only if every class is one piece in every case,
    hole filling only if it would not change the corrected labels; for CT an intensity gate: a
    predicted component whose median HU lies outside its class's fences in the corrected cases
    (quartiles -/+ one interquartile range) is dropped before keep-largest. A liver model trained on
    an upper-abdomen half-scan took the 13 HU bladder as its largest component (test Dice 0.00);
    gated, the liver's own component stayed (0.63).
  * **Left-right flip** (augmentation and mirror TTA) only if every class is centred on the body's
    midline: flipped, a spleen teaches the model that the liver may be spleen (every fine-tuned spleen
    and right-kidney model took the whole other side, test Dice <= 0.013), a right kidney the left one.
  * **Training patch** no larger than the training images (nnU-Net's rule): a corrected half-scan
    of 16 slices trained with 80-slice patches would be mostly padding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from segmentai_core.geometry import kji_to_ijk
from segmentai_core.volume import Volume

__all__ = ["Fingerprint", "Plan", "fingerprint", "plan", "plan_postprocessing", "fit_patch", "lateralised_classes"]

SOFT_TISSUE_WINDOW = (-160.0, 240.0)  # W400/L40: the window never narrows below it, so the fat, fluid and
# vessels around a structure stay distinct (a liver's own 0.5-99.5 % span is about 100 HU; with only that
# window a liver model trained on one half-scan took the pelvic muscles)
CT_AIR_HU = -500.0  # a CT's darkest percentile lies below this (air is -1000 HU); MR intensities do not
FIT_FRACTION = 0.85  # share of a patch the structure's extent may fill
MIN_SPACING_MM, MAX_SPACING_MM = 1.0, 4.0
MIN_STRUCTURE_VOXELS = 12  # the smallest structure's smallest extent, in voxels of the chosen grid
SINGLE_PIECE = 0.95  # largest component's share of a class for "one piece"
HOLES_TOLERANCE = 0.005  # hole filling may add at most this share of a class's voxels
MIDLINE_TOLERANCE = 0.1  # a class whose left-right centre lies further than this share of the body's width
# from the body's centre is lateralised (a spleen, a kidney): no left-right flip, no left-right mirror TTA


@dataclass
class Fingerprint:
    """What the corrected cases are, measured in their own intensities and millimetres."""

    modality: str  # "CT" or "MR"
    modality_reason: str
    foreground_percentiles: Tuple[float, float]  # 0.5 and 99.5 percentiles of labelled voxels
    extent_mm: float  # median over cases of the largest bounding-box extent of all labels together
    smallest_extent_mm: float  # smallest bounding-box extent of any class in any case
    scan_spacing_mm: float  # median over cases of each scan's finest spacing
    class_ranges: Dict[int, Tuple[float, float]] = field(default_factory=dict)  # label value: intensity fences


@dataclass
class Plan:
    """The new package's modality and preprocessing, and why."""

    modality: str
    input_channels: List[str]
    preprocessing: Dict[str, Any]
    reasons: List[str] = field(default_factory=list)
    class_ranges: Dict[int, Tuple[float, float]] = field(default_factory=dict)  # CT: label value → HU fences


def _looks_like_ct(array: np.ndarray) -> bool:
    sample = np.asarray(array).ravel()[:: max(1, array.size // 500_000)].astype(np.float32)
    whole = bool(np.all(np.abs(sample - np.round(sample)) < 1e-3))
    return whole and float(np.percentile(sample, 1)) < CT_AIR_HU


def _extents_mm(mask: np.ndarray, spacing_kji: Sequence[float]) -> Optional[np.ndarray]:
    if not mask.any():
        return None
    extents = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        extents.append((hit[-1] - hit[0] + 1) * spacing_kji[axis])
    return np.asarray(extents)


def fingerprint(cases: Sequence[Tuple[Volume, Volume]], channel_name: str = "") -> Fingerprint:
    """Measure ``(image, label map)`` pairs as read (before any resampling)."""
    ct_named = channel_name.strip().upper() in ("CT", "CTA", "HU")
    if ct_named:
        modality, reason = "CT", f"the dataset's channel is named '{channel_name}'"
    elif all(_looks_like_ct(image.array) for image, _ in cases):
        modality, reason = "CT", "the images hold Hounsfield units (air below -500, whole numbers)"
    else:
        modality, reason = "MR", "the images are not in Hounsfield units"
    values, extents, smallest, spacings = [], [], [], []
    per_class: Dict[int, List[np.ndarray]] = {}
    for image, label in cases:
        labels = np.asarray(label.array)
        spacing_kji = image.geometry.spacing_kji
        spacings.append(min(image.geometry.spacing))
        foreground = labels > 0
        union = _extents_mm(foreground, spacing_kji)
        if union is not None:
            extents.append(float(union.max()))
            step = max(1, int(foreground.sum()) // 1_000_000)
            values.append(np.asarray(image.array)[foreground][::step].astype(np.float32))
        for value in np.unique(labels[foreground]) if foreground.any() else []:
            mask = labels == value
            smallest.append(float(_extents_mm(mask, spacing_kji).min()))
            step = max(1, int(mask.sum()) // 500_000)
            per_class.setdefault(int(value), []).append(np.asarray(image.array)[mask][::step].astype(np.float32))
    pooled = np.concatenate(values) if values else np.zeros(1, np.float32)
    lo, hi = (float(v) for v in np.percentile(pooled, [0.5, 99.5]))
    return Fingerprint(modality, reason, (lo, hi), float(np.median(extents)) if extents else 0.0,
                       min(smallest) if smallest else 0.0, float(np.median(spacings)),
                       {value: _fences(np.concatenate(parts)) for value, parts in per_class.items()})


def _fences(values: np.ndarray) -> Tuple[float, float]:
    """Tukey-style fences of a class's intensities: one interquartile range beyond the quartiles."""
    q1, q3 = (float(v) for v in np.percentile(values, [25, 75]))
    return q1 - (q3 - q1), q3 + (q3 - q1)


def plan(parent_manifest, fp: Fingerprint, same_labels_as_parent: bool, patch_xyz: Sequence[int]) -> Plan:
    """The new package's preprocessing for these cases (see the module's rules)."""
    pre = copy.deepcopy(dict(parent_manifest.preprocessing))
    parent_modality = str(parent_manifest.modality or "").upper()
    channels = list(parent_manifest.input_channels)
    reasons = [f"modality {fp.modality}: {fp.modality_reason}"]
    if fp.modality == "CT" and parent_modality != "CT":
        lo, hi = fp.foreground_percentiles
        lo, hi = min(lo, SOFT_TISSUE_WINDOW[0]), max(hi, SOFT_TISSUE_WINDOW[1])
        pre["normalization"] = {"type": "ct_window", "window": [round(lo, 1), round(hi, 1)]}
        channels = ["CT"]
        reasons.append(f"CT normalisation: one window for every scan, [{lo:.0f}, {hi:.0f}] HU (the 0.5-99.5 "
                       f"percentiles of the labelled voxels, [{fp.foreground_percentiles[0]:.0f}, "
                       f"{fp.foreground_percentiles[1]:.0f}], widened to at least the soft-tissue window), instead "
                       f"of the parent's per-image "
                       f"'{parent_manifest.preprocessing.get('normalization', {}).get('type', 'none')}'")
    elif fp.modality == "MR" and parent_modality == "CT":
        pre["normalization"] = {"type": "percentile", "lower": 0.5, "upper": 99.5}
        channels = ["MR"]
        reasons.append("MR normalisation: each image's 0.5-99.5 percentiles, instead of the parent's CT window")
    spacing = [float(s) for s in pre["target_spacing"]]
    if same_labels_as_parent or fp.extent_mm <= 0:
        reasons.append(f"spacing {spacing} mm: the parent's (same labels, same task)")
    else:
        patch = float(min(patch_xyz))
        wanted = fp.extent_mm / (FIT_FRACTION * patch)
        finest = max(MIN_SPACING_MM, fp.scan_spacing_mm)
        chosen = float(np.clip(wanted, finest, MAX_SPACING_MM))
        if fp.smallest_extent_mm > 0:
            chosen = max(finest, min(chosen, fp.smallest_extent_mm / MIN_STRUCTURE_VOXELS))
        chosen = round(chosen * 4) / 4  # quarter millimetres: a readable manifest
        spacing = [chosen] * 3
        reasons.append(f"spacing {chosen} mm isotropic: the labelled structure spans {fp.extent_mm:.0f} mm and "
                       f"fits in {FIT_FRACTION:.0%} of a {int(patch)}-voxel patch at {wanted:.2f} mm (kept between "
                       f"{finest:.2f} and {MAX_SPACING_MM} mm; smallest structure {fp.smallest_extent_mm:.0f} mm)")
    pre["target_spacing"] = spacing
    return Plan(fp.modality, channels, pre, reasons, dict(fp.class_ranges) if fp.modality == "CT" else {})


def plan_postprocessing(parent_post: Mapping[str, Any], labels: Sequence[np.ndarray], num_classes: int,
                        intensity_ranges: Optional[Mapping[int, Tuple[float, float]]] = None) -> Tuple[
        Dict[str, Any], List[str]]:
    """Keep-largest and hole filling only where the corrected labels themselves are so shaped.

    ``labels`` are the cases' class maps on the training grid (0 background, 1..num_classes-1).
    ``intensity_ranges`` (CT only: label value → HU fences of its corrected voxels) become the
    engine's component intensity gate.
    """
    import cc3d
    from scipy import ndimage

    single, holes_ok = True, True
    for classes in labels:
        for value in range(1, num_classes):
            mask = classes == value
            count = int(mask.sum())
            if not count:
                continue
            components = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
            sizes = np.bincount(components.ravel())[1:]
            single &= bool(sizes.max() >= SINGLE_PIECE * count)
            filled = int(ndimage.binary_fill_holes(mask).sum())
            holes_ok &= bool(filled - count <= HOLES_TOLERANCE * count)
    post = dict(parent_post or {})
    post["largest_component"] = single
    post["fill_holes"] = holes_ok
    post.pop("intensity_range", None)
    reasons = [("keep the largest component: every class is one piece in every case" if single else
                "no keep-largest-component: a class has several pieces in the corrected cases"),
               ("fill holes: filling changes the corrected labels by under 0.5 %" if holes_ok else
                "no hole filling: the corrected labels have real holes (filling would add voxels)")]
    if intensity_ranges:
        post["intensity_range"] = {str(v): [round(lo, 1), round(hi, 1)] for v, (lo, hi) in intensity_ranges.items()}
        reasons.append("a predicted component whose median lies outside its class's HU fences (quartiles -/+ one "
                       "interquartile range of the corrected voxels) is dropped before keep-largest: " +
                       ", ".join(f"label {v} [{lo:.0f}, {hi:.0f}] HU" for v, (lo, hi) in intensity_ranges.items()))
    return post, reasons


def fit_patch(patch_kji: Sequence[int], shapes: Sequence[Sequence[int]], divisor_kji: Sequence[int]) -> Tuple[
        Tuple[int, ...], Optional[str]]:
    """The training patch shrunk, axis by axis, to the median training image (a multiple of the
    network's divisor, at least one), and a sentence when it changed. Zero padding that fills half
    of every training patch is a context the test scans never show."""
    median = np.median(np.asarray(shapes, dtype=float), axis=0)
    fitted = tuple(int(min(p, max(d, (m // d) * d))) for p, m, d in zip(patch_kji, median, divisor_kji))
    if fitted == tuple(patch_kji):
        return fitted, None
    return fitted, (f"training patch {list(kji_to_ijk(fitted))} (x, y, z) instead of {list(kji_to_ijk(patch_kji))}: "
                    f"no larger than the training images ({[int(v) for v in kji_to_ijk(median)]} voxels)")


def lateralised_classes(cases: Sequence[Tuple[np.ndarray, np.ndarray]], num_classes: int, axis: int) -> List[int]:
    """Classes whose left-right centre (array ``axis``) lies off the body's midline in some case.

    ``cases`` are (normalised image, class map) pairs on the training grid. The body is the image
    above a tenth of its range (air and padding below); a class is off the midline when its centroid
    is further than :data:`MIDLINE_TOLERANCE` of the body's width from the body's centroid.
    """
    off = set()
    for image, classes in cases:
        image = np.asarray(image, dtype=np.float32)
        lo, hi = float(image.min()), float(image.max())
        body = image > lo + 0.1 * (hi - lo)
        if not body.any():
            continue
        others = tuple(a for a in range(image.ndim) if a != axis)
        profile = body.sum(axis=others).astype(float)
        where = np.flatnonzero(profile)
        width = float(where[-1] - where[0] + 1)
        centre = float((profile * np.arange(len(profile))).sum() / profile.sum())
        for value in range(1, num_classes):
            counts = (classes == value).sum(axis=others).astype(float)
            if counts.sum() and abs((counts * np.arange(len(counts))).sum() / counts.sum() - centre) > \
                    MIDLINE_TOLERANCE * width:
                off.add(value)
    return sorted(off)
