"""Slicer segmentation files (``.seg.nrrd``) and plain label maps, with segment names and colours.

A ``.seg.nrrd`` written here is one 3D NRRD layer whose voxels are label values, plus the
``SegmentN_*`` and ``Segmentation_*`` key/value pairs that Slicer's segmentation storage node
writes (field list: Slicer's ``vtkMRMLSegmentationStorageNode``; also read by ``slicerio``).
Slicer loads it as a segmentation with the given names, colours and terminology.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import InputError, OutputError
from ..labels import Code, SegmentLabel, Terminology
from ..volume import Volume
from .file_checks import read_nrrd_header
from .volume_io import WRITE_EXTENSIONS, as_labelmap, read_volume, write_image_atomic

__all__ = ["read_labelmap", "read_segmentation", "segment_extents", "segmentation_metadata", "with_segment",
           "write_labelmap", "write_segmentation"]

PathLike = Union[str, Path]

_GLOBAL_FIELDS = {
    "Segmentation_MasterRepresentation": "Binary labelmap",
    "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
    "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    "Segmentation_ConversionParameters": "",
}


def segment_extents(array: np.ndarray, values: Sequence[int]) -> dict[int, str]:
    """Slicer ``Extent`` strings (``"i0 i1 j0 j1 k0 k1"``, inclusive) of each label's voxels.

    One pass over the array (``scipy.ndimage.find_objects``) rather than one per label; an empty
    label gets the full extent, as Slicer's readers expect a valid extent.
    """
    from scipy import ndimage

    nk, nj, ni = array.shape
    full = f"0 {ni - 1} 0 {nj - 1} 0 {nk - 1}"
    boxes = ndimage.find_objects(array, max_label=max(values, default=0)) if values else []
    extents = {}
    for value in values:
        box = boxes[value - 1] if 0 < value <= len(boxes) else None
        if box is None:
            extents[value] = full
        else:
            sk, sj, si = box
            extents[value] = f"{si.start} {si.stop - 1} {sj.start} {sj.stop - 1} {sk.start} {sk.stop - 1}"
    return extents


def _present_values(array: np.ndarray) -> list[int]:
    """Sorted distinct values of an integer label array (bincount is much faster than unique for small types)."""
    if array.size == 0:
        return []
    if array.dtype in (np.uint8, np.uint16):
        return [int(v) for v in np.flatnonzero(np.bincount(array.ravel()))]
    return [int(v) for v in np.unique(array)]


def _one_line(text: str) -> str:
    # Header values are line based: a newline in a name would end the header early.
    return " ".join(str(text).splitlines())


def _complete_labels(array: np.ndarray, labels: Sequence[SegmentLabel], path: Path) -> list[SegmentLabel]:
    """The given labels plus a generic one for every value in the array that none describes."""
    by_value: dict[int, SegmentLabel] = {}
    for label in labels:
        if label.value <= 0:
            raise OutputError(f"{path}: segment '{label.name}' has label value {label.value}; values must be > 0")
        if label.value in by_value:
            raise OutputError(f"{path}: label value {label.value} is used by two segments")
        by_value[label.value] = label
    missing = [v for v in _present_values(array) if v != 0 and v not in by_value]
    if missing and labels:
        warnings.warn(f"{path}: label values {missing} have no segment name; writing generic names", stacklevel=3)
    for value in missing:
        by_value[value] = SegmentLabel.default_for(value)
    return [by_value[value] for value in sorted(by_value)]


def write_segmentation(
    labelmap: Volume,
    labels: Sequence[SegmentLabel],
    path: PathLike,
    *,
    overwrite: bool = False,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a Slicer ``.seg.nrrd``: the label map on its own grid plus one segment per label.

    Every label in ``labels`` is listed even when it has no voxels; values present in the map but
    missing from ``labels`` get generic segments. ``extra_metadata`` keys (e.g. provenance such
    as ``SegmentAI_Model``) are written verbatim as NRRD key/value pairs.

    Raises:
        OutputError: exists and not ``overwrite``, not a ``.nrrd`` name, bad labels or metadata,
            or the write failed (nothing is left behind).
    """
    path = Path(path)
    if not path.name.lower().endswith(".nrrd"):
        raise OutputError(f"{path}: a segmentation is written as .seg.nrrd")
    try:
        labelmap = as_labelmap(labelmap)
    except ValueError as error:
        raise OutputError(f"{path}: {error}") from None
    array = labelmap.array
    if array.size and array.min() < 0:
        raise OutputError(f"{path}: a segmentation cannot hold negative label values")
    segments = _complete_labels(array, labels, path)
    extents = segment_extents(array, [s.value for s in segments])

    metadata: dict[str, str] = dict(_GLOBAL_FIELDS)
    for index, segment in enumerate(segments):
        prefix = f"Segment{index}_"
        tags = f"TerminologyEntry:{segment.terminology.to_slicer()}|" if segment.terminology else ""
        metadata.update(
            {
                prefix + "ID": f"Segment_{segment.value}",
                prefix + "Name": _one_line(segment.name),
                prefix + "Color": " ".join(f"{float(c):.6g}" for c in segment.color),
                prefix + "ColorAutoGenerated": "0",
                prefix + "Extent": extents[segment.value],
                prefix + "Layer": "0",
                prefix + "LabelValue": str(segment.value),
                prefix + "NameAutoGenerated": "0",
                prefix + "Tags": tags,
            }
        )
    for key, value in (extra_metadata or {}).items():
        if not key or any(c in key for c in ":\n\r") or key.startswith(("NRRD_", "ITK_")):
            raise OutputError(f"{path}: metadata key {key!r} cannot be stored in a NRRD header")
        metadata[key] = _one_line(value)

    image = labelmap.to_sitk()
    for key, value in metadata.items():
        image.SetMetaData(key, value)
    return write_image_atomic(image, path, overwrite, (".seg.nrrd", ".nrrd"))


# -- reading ----------------------------------------------------------------------------------


def _parse_code(text: str) -> Code | None:
    parts = text.split("^")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    return Code(*parts)


def parse_terminology(entry: str) -> Terminology | None:
    """A :class:`Terminology` from Slicer's tilde-separated TerminologyEntry (None if unusable)."""
    parts = entry.split("~")
    if len(parts) < 4:
        return None
    category, type_ = _parse_code(parts[1]), _parse_code(parts[2])
    if category is None or type_ is None:
        return None
    region = _parse_code(parts[5]) if len(parts) > 5 else None
    return Terminology(category, type_, _parse_code(parts[3]), region)


def _parse_color(text: str | None, value: int) -> tuple[float, float, float]:
    try:
        rgb = tuple(float(c) for c in (text or "").split())
    except ValueError:
        rgb = ()
    return rgb if len(rgb) == 3 else SegmentLabel.default_for(value).color  # type: ignore[return-value]


def _segments_from_header(keyvalues: dict[str, str]) -> list[SegmentLabel]:
    fields: dict[int, dict[str, str]] = {}
    for key, value in keyvalues.items():
        head, _, name = key.partition("_")
        if head.startswith("Segment") and head[7:].isdigit() and name:
            fields.setdefault(int(head[7:]), {})[name] = value
    labels: dict[int, SegmentLabel] = {}
    for index in sorted(fields):
        segment = fields[index]
        try:
            value = int(segment.get("LabelValue", ""))
        except ValueError:
            continue  # old files without label values: nothing to map
        terminology = None
        for tag in segment.get("Tags", "").split("|"):
            if tag.startswith("TerminologyEntry:"):
                terminology = parse_terminology(tag[len("TerminologyEntry:") :])
        name = segment.get("Name") or f"Segment_{value}"
        if value > 0 and value not in labels:
            labels[value] = SegmentLabel(value, name, _parse_color(segment.get("Color"), value), terminology)
    return [labels[v] for v in sorted(labels)]


def _integer_labels(volume: Volume, path: Path) -> Volume:
    try:
        return as_labelmap(volume)
    except ValueError:
        raise InputError(f"{path} is not a label map: it holds non-integer values") from None


def read_segmentation(path: PathLike) -> tuple[Volume, list[SegmentLabel]]:
    """Read a ``.seg.nrrd`` or a plain label map and the segments it holds.

    Segment names, colours and terminology come from Slicer's metadata where present; plain label
    maps get generic labels (:meth:`SegmentLabel.default_for`) for each non-zero value.

    Raises:
        InputError: as for :func:`~segmentai_core.io.volume_io.read_volume`; also for multi-layer
            (overlapping) segmentations and non-integer voxel values.
    """
    path = Path(path)
    keyvalues: dict[str, str] = {}
    if path.is_file() and path.name.lower().endswith((".nrrd", ".nhdr")):
        header = read_nrrd_header(path)
        keyvalues = header.keyvalues
        is_segmentation = any(k.startswith("Segment") for k in keyvalues)
        if is_segmentation and header.fields.get("dimension", "3") != "3":
            raise InputError(
                f"{path} holds overlapping segments in several layers; this is not supported yet "
                "(merge them into one layer in Slicer first)"
            )
    labelmap = _integer_labels(read_volume(path), path)
    labels = _segments_from_header(keyvalues)
    if not labels:
        labels = [SegmentLabel.default_for(v) for v in _present_values(labelmap.array) if v > 0]
    return labelmap, labels


def write_labelmap(volume: Volume, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write a label map (uint8, or uint16/int32 when values need it) on the volume's exact grid.

    ``.seg.nrrd`` targets get Slicer segment metadata with generic names and colours (see
    :func:`write_segmentation` to name segments).

    Raises:
        OutputError: as for :func:`~segmentai_core.io.volume_io.write_volume`.
    """
    path = Path(path)
    if path.name.lower().endswith(".seg.nrrd"):
        return write_segmentation(volume, [], path, overwrite=overwrite)
    return write_image_atomic(as_labelmap(volume).to_sitk(), path, overwrite, WRITE_EXTENSIONS)


def read_labelmap(path: PathLike) -> Volume:
    """The label map of :func:`read_segmentation` (integer voxels on the file's grid)."""
    return read_segmentation(path)[0]


def segmentation_metadata(path: PathLike) -> dict[str, str]:
    """The NRRD key/value pairs of a segmentation file that are not about its segments (e.g. provenance such
    as ``SegmentAI_Model``), to write back with :func:`write_segmentation`'s ``extra_metadata``.

    Segment fields (``SegmentN_*``) and Slicer's global ``Segmentation_*`` fields are left out: they are
    rewritten from the labels. Files that are not NRRD have none.
    """
    path = Path(path)
    if not (path.is_file() and path.name.lower().endswith((".nrrd", ".nhdr"))):
        return {}
    kept = {}
    for key, value in read_nrrd_header(path).keyvalues.items():
        head = key.partition("_")[0]
        if head == "Segmentation" or (head.startswith("Segment") and head[7:].isdigit()):
            continue
        if not key or any(c in key for c in ":\n\r") or key.startswith(("NRRD_", "ITK_")):
            continue
        kept[key] = value
    return kept


def with_segment(labels: np.ndarray, value: int, mask: np.ndarray) -> np.ndarray:
    """``labels`` with segment ``value`` replaced by ``mask`` (non-zero = the segment's voxels).

    Voxels of the other segments stay theirs, also where ``mask`` covers them; voxels that were
    ``value`` and are not in ``mask`` become background.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.shape != labels.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the label map's {labels.shape}")
    result = np.array(labels, copy=True)
    own = labels == value
    result[own & ~mask] = 0
    result[mask & (own | (labels == 0))] = value
    return result
