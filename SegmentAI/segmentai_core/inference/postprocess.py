"""Label-map postprocessing: keep the largest connected component, fill holes.

Connected components come from ``connected-components-3d`` (cc3d) when it is installed: on a
brain-sized mask of 22 M voxels it labels 26-connected components in 0.09 s where SciPy's
``ndimage.label`` takes 0.51 s, and fills holes (background components not reaching the box border,
6-connected as ``binary_fill_holes`` defines them) in 0.29 s where SciPy takes 1.34 s (2 CPU cores,
``bench/bench_segment.py``). Without it, SciPy gives the same result more slowly.

Both functions take ``within``, the box outside which the label map is known to be 0 (from
:func:`~.restore.restore_labels`), so that no full-resolution scan is made to find each label.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Tuple

import numpy as np
from scipy import ndimage

try:  # optional accelerator: same results, 4-6x faster
    import cc3d
except ImportError:  # pragma: no cover - exercised where cc3d is absent
    cc3d = None

__all__ = ["keep_largest_component", "fill_holes", "drop_off_intensity", "bounding_box", "label_boxes"]

Box = Tuple[slice, ...]


def bounding_box(mask: np.ndarray, margin: int = 1):
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels, or None if empty."""
    objects = ndimage.find_objects(mask.astype(np.uint8, copy=False))
    if not objects or objects[0] is None:
        return None
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(objects[0], mask.shape))


def label_boxes(labelmap: np.ndarray, labels: Iterable[int], margin: int = 1,
                within: Optional[Box] = None) -> dict:
    """``{label: slices}`` of each present label's bounding box grown by ``margin``, in one pass."""
    offset = [0] * labelmap.ndim if within is None else [s.start for s in within]
    region = labelmap if within is None else labelmap[within]
    objects = ndimage.find_objects(region)
    boxes = {}
    for value in labels:
        found = objects[value - 1] if 0 < value <= len(objects) else None
        if found is None:
            continue
        boxes[value] = tuple(slice(max(0, s.start + o - margin), min(n, s.stop + o + margin))
                             for s, o, n in zip(found, offset, labelmap.shape))
    return boxes


def _largest_only(mask: np.ndarray) -> Optional[np.ndarray]:
    """Voxels of ``mask`` outside its largest 26-connected component (None when it has one component)."""
    if cc3d is not None and mask.ndim in (2, 3):
        components, count = cc3d.connected_components(mask, connectivity=26 if mask.ndim == 3 else 8,
                                                      return_N=True)
    else:
        components, count = ndimage.label(mask, np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return None
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return mask & (components != int(np.argmax(sizes)))


def _holes(mask: np.ndarray) -> np.ndarray:
    """Background voxels of ``mask`` not 6-connected to the array's border (``binary_fill_holes``)."""
    if cc3d is None or mask.ndim not in (2, 3):
        return ndimage.binary_fill_holes(mask) & ~mask
    background = cc3d.connected_components(~mask, connectivity=6 if mask.ndim == 3 else 4)
    faces = [background[0], background[-1], background[:, 0], background[:, -1]]
    if mask.ndim == 3:
        faces += [background[:, :, 0], background[:, :, -1]]
    outside = np.zeros(int(background.max()) + 1, dtype=bool)
    for face in faces:
        outside[np.unique(face)] = True
    outside[0] = True  # 0 marks the mask itself
    return ~outside[background]


def _keep_largest_multilabel(region: np.ndarray, labels: Iterable[int]) -> None:
    """All labels in one cc3d pass: components never join across labels, so this equals one pass per label."""
    components, count = cc3d.connected_components(region, connectivity=26, return_N=True)
    if count == 0:
        return
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    owner = np.zeros(count + 1, dtype=region.dtype)
    owner[components.ravel()] = region.ravel()
    order = np.argsort(-sizes[1:], kind="stable") + 1  # largest first; ties: the first in scan order
    keep = np.zeros(count + 1, dtype=bool)
    keep[order[np.unique(owner[order], return_index=True)[1]]] = True
    keep[~np.isin(owner, list(labels))] = True  # labels not asked for keep every component
    keep[0] = True
    region[~keep[components]] = 0


def keep_largest_component(labelmap: np.ndarray, labels: Iterable[int], within: Optional[Box] = None) -> np.ndarray:
    """For each label, drop every 26-connected component but the largest (in place; returned)."""
    labels = list(labels)
    if cc3d is not None and labelmap.ndim == 3 and len(labels) > 1:
        _keep_largest_multilabel(labelmap if within is None else labelmap[within], labels)
        return labelmap
    for value, box in label_boxes(labelmap, labels, within=within).items():
        region = labelmap[box]
        drop = _largest_only(region == value)
        if drop is not None:
            region[drop] = 0
    return labelmap


def fill_holes(labelmap: np.ndarray, labels: Iterable[int], within: Optional[Box] = None) -> np.ndarray:
    """Fill enclosed background holes of each label, never taking other labels' voxels (in place)."""
    for value, box in label_boxes(labelmap, labels, within=within).items():
        region = labelmap[box]
        region[_holes(region == value) & (region == 0)] = value
    return labelmap


def drop_off_intensity(labelmap: np.ndarray, image: np.ndarray, ranges: Mapping[int, Tuple[float, float]],
                       within: Optional[Box] = None) -> np.ndarray:
    """Drop each component of a label whose median image intensity lies outside the label's range.

    A check for CT models fine-tuned on few cases: Hounsfield units are calibrated, so a 13 HU
    bladder that a liver model trained on one upper-abdomen half-scan took for liver is told apart
    by what the corrected liver measured, whatever the network learnt. If no component of a label
    is in range, the one whose median is nearest stays: the gate never empties a label by itself.
    ``image`` is on the labelmap's grid. In place; returned.
    """
    for value, box in label_boxes(labelmap, list(ranges), within=within).items():
        lo, hi = ranges[value]
        region = labelmap[box]
        mask = region == value
        if cc3d is not None:
            components, count = cc3d.connected_components(mask, connectivity=26, return_N=True)
        else:
            components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
        if count == 0:
            continue
        ids = components[mask]
        values = np.asarray(image[box])[mask].astype(np.float32)
        order = np.argsort(ids, kind="stable")
        starts = np.searchsorted(ids[order], np.arange(2, count + 1))
        medians = np.array([np.median(part) for part in np.split(values[order], starts)])
        distance = np.maximum(lo - medians, 0) + np.maximum(medians - hi, 0)
        keep = distance == 0
        if not keep.any():
            keep[np.argmin(distance)] = True
        region[np.concatenate([[False], ~keep])[components]] = 0
    return labelmap
