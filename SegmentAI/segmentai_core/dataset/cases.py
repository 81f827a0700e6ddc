"""Adding corrected cases to a dataset (atomic, never overwriting) and listing them."""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .. import __version__
from ..errors import InputError, OutputError
from ..labels import SegmentLabel
from ..volume import Volume
from .layout import (
    DATASET_JSON, DatasetInfo, case_ids_on_disk, create_dataset, image_path, label_path, load_dataset,
    provenance_path, save_dataset,
)
from .lock import locked_dataset_writer

__all__ = ["CaseInfo", "add_case", "find_duplicate", "list_cases", "remap_labels", "voxel_sha256"]

PathLike = Union[str, Path]
LabelsArg = Union[Sequence[SegmentLabel], Mapping[int, str], None]
_GENERIC = re.compile(r"^Segment_(\d+)$")


@dataclass
class CaseInfo:
    """One case of a dataset: its files and provenance (None when the case has no record)."""

    case_id: str
    image: Optional[Path]
    label: Optional[Path]
    provenance: Optional[Dict[str, Any]]


def _names_by_value(labelmap: np.ndarray, labels: LabelsArg) -> Dict[int, str]:
    if labels is None:
        named: Dict[int, str] = {}
    elif isinstance(labels, Mapping):
        named = {int(v): str(n) for v, n in labels.items()}
    else:
        named = {label.value: label.name for label in labels}
    present = [int(v) for v in np.unique(labelmap) if v != 0]
    return {v: named.get(v, f"Segment_{v}") for v in present}


def remap_labels(labelmap: np.ndarray, labels: LabelsArg, dataset: Optional[DatasetInfo],
                 where: str = "segmentation") -> "tuple[np.ndarray, Dict[str, int]]":
    """Map the segmentation's values onto the dataset's label values by segment name.

    Returns the remapped uint8/uint16 array and the name → value labels the case uses. A segment
    named like no dataset label is refused; an unnamed value (``Segment_N``) keeps its value if
    the dataset has it. Without a dataset, the case's own names and values are used.
    """
    names = _names_by_value(labelmap, labels)
    if not names:
        raise InputError(f"{where}: the segmentation is empty (no labelled voxels)")
    if dataset is None:
        used = {name: value for value, name in names.items()}
        if len(used) != len(names):
            raise InputError(f"{where}: two label values share one segment name")
        return labelmap, used
    lut: Dict[int, int] = {}
    used = {}
    for value, name in names.items():
        target = dataset.label_value(name)
        generic = _GENERIC.match(name)
        if target is None and generic and value in dataset.labels.values():
            target = value
        if target is None or target == 0:
            known = ", ".join(n for n in dataset.labels if n != "background")
            raise InputError(f"{where}: segment '{name}' (value {value}) is not a label of dataset "
                             f"{dataset.folder.name} (labels: {known}); rename it or pass --labels VALUE=NAME")
        if target in lut.values():
            raise InputError(f"{where}: two segments map onto dataset label {target}")
        lut[value] = target
        used[next(n for n, v in dataset.labels.items() if v == target)] = target
    table = np.zeros(int(labelmap.max()) + 1, dtype=np.int64)
    for value, target in lut.items():
        table[value] = target
    dtype = np.uint8 if max(lut.values()) < 256 else np.uint16
    return table[labelmap.astype(np.int64)].astype(dtype), used


def _next_number(folder: Path) -> int:
    on_disk = case_ids_on_disk(folder)
    numbers = [0]
    for case_id in on_disk["images"] + on_disk["labels"]:
        match = re.search(r"(\d+)$", case_id)
        if match:
            numbers.append(int(match.group(1)))
    return max(numbers) + 1


def _link_new(staged: Path, final: Path) -> None:
    """Give ``staged`` the name ``final`` only if ``final`` does not exist (FileExistsError otherwise)."""
    try:
        os.link(staged, final)
    except FileExistsError:
        raise
    except OSError:  # file systems without hard links: exclusive create, then rename over it
        fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        os.replace(staged, final)
        return
    staged.unlink()


def _write_new(volume: Volume, final: Path, writer) -> None:
    staged = final.parent / f".{final.name[:-7]}.{secrets.token_hex(4)}{final.name[-7:]}"
    writer(volume, staged)
    try:
        _link_new(staged, final)
    finally:
        if staged.exists():
            staged.unlink()


def voxel_sha256(array: np.ndarray) -> str:
    """SHA-256 of an image's voxel values and shape, independent of file format, compression and storage type:
    the same scan saved as int16 NRRD and as float32 NIfTI hashes the same (hashed slice by slice as float64)."""
    import hashlib

    array = np.asarray(array)
    digest = hashlib.sha256(f"voxels{array.shape}".encode())
    for plane in array.reshape((array.shape[0], -1)) if array.ndim > 1 else [array]:
        digest.update(np.ascontiguousarray(plane, dtype="<f8").tobytes())
    return digest.hexdigest()


def _stored_voxel_sha256(folder: Path, case_id: str) -> Optional[str]:
    """The voxel hash of a stored case's image: from its provenance record, else read from the file."""
    from ..errors import SegmentAIError
    from ..io import read_volume

    path = provenance_path(folder, case_id)
    if path.is_file():
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("image", {}).get("voxel_sha256")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
    try:
        return voxel_sha256(np.asarray(read_volume(image_path(folder, case_id)).array))
    except SegmentAIError:
        return None


def find_duplicate(dataset_dir: PathLike, digest: str) -> Optional[str]:
    """The id of a case of the dataset whose image has the voxel hash ``digest`` (None when none has)."""
    folder = Path(dataset_dir)
    for case_id in sorted(case_ids_on_disk(folder)["images"]):
        if _stored_voxel_sha256(folder, case_id) == digest:
            return case_id
    return None


@locked_dataset_writer  # creation, labels and case numbering: one writer at a time (see lock.py)
def add_case(dataset_dir: PathLike, image: Volume, labelmap: Volume, labels: LabelsArg = None,
             provenance: Optional[Mapping[str, Any]] = None, *, channel_names: Sequence[str] = ("image",),
             prefix: str = "case", allow_duplicate: bool = False) -> str:
    """Copy one corrected case into the dataset and return its new case id (e.g. ``case_0004``).

    ``labels`` names the label map's values (segments of a ``.seg.nrrd``, or ``{value: name}``);
    they are mapped onto ``dataset.json`` labels by name. A dataset that does not exist yet is
    created with these labels and ``channel_names``. Files appear whole under a fresh case id and
    an existing case is never overwritten. ``provenance`` (source files, the model that made the
    draft...) is stored in ``provenance/<case>.json`` with the time and the files' SHA-256.

    An image whose voxels equal those of a case already in the dataset is refused unless
    ``allow_duplicate``: a scan in both the training and the validation split inflates validation.
    """
    from ..io.segmentation_io import write_labelmap
    from ..io.volume_io import write_volume
    from ..models.package import sha256_of_file

    folder = Path(dataset_dir)
    if image.array.ndim != 3 or labelmap.array.ndim != 3:
        raise InputError("image and segmentation must be 3D volumes")
    if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).any():
        raise InputError("the image has no finite voxel (every voxel is NaN or infinite): it cannot be a training case")
    if not image.geometry.same_grid(labelmap.geometry, tolerance_mm=1e-2):
        raise InputError(f"the segmentation's grid ({labelmap.geometry.describe()}) differs from the image's "
                         f"({image.geometry.describe()}); resample it onto the image first")
    exists = (folder / DATASET_JSON).exists()
    info = load_dataset(folder) if exists else None
    array, used = remap_labels(np.asarray(labelmap.array), labels, info)
    digest = voxel_sha256(np.asarray(image.array))
    if info is not None and not allow_duplicate:
        twin = find_duplicate(folder, digest)
        if twin is not None:
            raise InputError(f"this image is already in dataset {folder.name} as {twin} (same voxels, SHA-256 "
                             f"{digest[:12]}...): a scan in both training and validation inflates validation Dice; "
                             "correct that case instead, or pass --allow-duplicate")
    if info is None:
        info = create_dataset(folder, used, channel_names)
    for sub in ("imagesTr", "labelsTr", "provenance"):
        (folder / sub).mkdir(parents=True, exist_ok=True)

    label_volume = labelmap.with_array(array)
    for _ in range(1000):  # another writer may take the same number: try the next one
        case_id = f"{prefix}_{_next_number(folder):04d}"
        try:
            _write_new(image, image_path(folder, case_id), lambda v, p: write_volume(v, p))
        except FileExistsError:
            continue
        try:
            _write_new(label_volume, label_path(folder, case_id), lambda v, p: write_labelmap(v, p))
        except BaseException:
            image_path(folder, case_id).unlink()
            raise
        break
    else:  # pragma: no cover
        raise OutputError(f"{folder}: could not find a free case id")

    record = {
        "case_id": case_id,
        "added": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "segmentai_version": __version__,
        "image": {"file": image_path(folder, case_id).relative_to(folder).as_posix(),
                  "sha256": sha256_of_file(image_path(folder, case_id)), "voxel_sha256": digest},
        "label": {"file": label_path(folder, case_id).relative_to(folder).as_posix(),
                  "sha256": sha256_of_file(label_path(folder, case_id))},
        "labels": used,
        **dict(provenance or {}),
    }
    from ..io.staging import write_json_atomic

    write_json_atomic(provenance_path(folder, case_id), record)
    info = load_dataset(folder)
    on_disk = case_ids_on_disk(folder)
    info.num_training = len(set(on_disk["images"]) & set(on_disk["labels"]))
    save_dataset(info)
    return case_id


def list_cases(dataset_dir: PathLike) -> List[CaseInfo]:
    """Every case id found in ``imagesTr`` or ``labelsTr``, sorted, with its provenance record."""
    folder = Path(dataset_dir)
    load_dataset(folder)
    on_disk = case_ids_on_disk(folder)
    cases = []
    for case_id in sorted(set(on_disk["images"]) | set(on_disk["labels"])):
        record = None
        path = provenance_path(folder, case_id)
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                record = None
        image, label = image_path(folder, case_id), label_path(folder, case_id)
        cases.append(CaseInfo(case_id, image if image.exists() else None, label if label.exists() else None, record))
    return cases
