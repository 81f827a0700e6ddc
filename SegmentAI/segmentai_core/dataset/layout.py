"""Paths and ``dataset.json`` of a dataset folder in nnU-Net v2's raw layout."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..errors import InputError

__all__ = [
    "DATASET_JSON", "FILE_ENDING", "DatasetInfo", "create_dataset", "load_dataset", "save_dataset",
    "image_path", "label_path", "provenance_path", "case_ids_on_disk",
]

DATASET_JSON = "dataset.json"
FILE_ENDING = ".nii.gz"
IMAGES = "imagesTr"
LABELS = "labelsTr"
PROVENANCE = "provenance"

PathLike = Union[str, Path]


@dataclass
class DatasetInfo:
    """The parsed ``dataset.json`` of the dataset in ``folder``.

    ``labels`` maps names to values and always holds ``background: 0``; ``extra`` keeps keys
    that SegmentAI does not use (nnU-Net's ``regions_class_order``, a description...).
    """

    folder: Path
    channel_names: Dict[str, str]
    labels: Dict[str, int]
    num_training: int = 0
    file_ending: str = FILE_ENDING
    name: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def foreground(self) -> Dict[int, str]:
        """Label values (> 0) → names, sorted by value: the network's classes 1..N in this order."""
        return {v: n for n, v in sorted(self.labels.items(), key=lambda item: item[1]) if v > 0}

    def label_value(self, name: str) -> Optional[int]:
        """The value of a label by name (case-insensitive), or None."""
        lowered = name.strip().lower()
        for label_name, value in self.labels.items():
            if label_name.lower() == lowered:
                return value
        return None

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = dict(self.extra)
        if self.name:
            data["name"] = self.name
        data.update({
            "channel_names": dict(self.channel_names),
            "labels": dict(sorted(self.labels.items(), key=lambda item: item[1])),
            "numTraining": int(self.num_training),
            "file_ending": self.file_ending,
        })
        return data


def image_path(folder: PathLike, case_id: str, channel: int = 0) -> Path:
    return Path(folder) / IMAGES / f"{case_id}_{channel:04d}{FILE_ENDING}"


def label_path(folder: PathLike, case_id: str) -> Path:
    return Path(folder) / LABELS / f"{case_id}{FILE_ENDING}"


def provenance_path(folder: PathLike, case_id: str) -> Path:
    return Path(folder) / PROVENANCE / f"{case_id}.json"


def case_ids_on_disk(folder: PathLike) -> Dict[str, List[str]]:
    """Case ids found in ``imagesTr`` (channel 0) and ``labelsTr``, each sorted; temporary files skipped."""
    folder = Path(folder)
    images = sorted(p.name[: -len("_0000" + FILE_ENDING)] for p in (folder / IMAGES).glob(f"*_0000{FILE_ENDING}")
                    if not p.name.startswith("."))
    labels = sorted(p.name[: -len(FILE_ENDING)] for p in (folder / LABELS).glob(f"*{FILE_ENDING}")
                    if not p.name.startswith("."))
    return {"images": images, "labels": labels}


def _check_labels(labels: Mapping[str, Any], where: str) -> Dict[str, int]:
    if not isinstance(labels, Mapping) or not labels:
        raise InputError(f"{where}: 'labels' must be an object of names and values")
    out: Dict[str, int] = {}
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{where}: label '{name}' must have a non-negative integer value (got {value!r})")
        out[str(name)] = int(value)
    if out.get("background") != 0:
        raise InputError(f"{where}: 'labels' must contain \"background\": 0")
    values = list(out.values())
    duplicate = sorted({v for v in values if values.count(v) > 1})
    if duplicate:
        raise InputError(f"{where}: label value {duplicate[0]} is used by two labels")
    return out


def load_dataset(folder: PathLike) -> DatasetInfo:
    """Read and check ``<folder>/dataset.json`` (InputError with one line when it is unusable)."""
    folder = Path(folder)
    path = folder / DATASET_JSON
    if not folder.is_dir():
        raise InputError(f"{folder}: no such dataset folder")
    if not path.is_file():
        raise InputError(f"{folder} is not a dataset: it has no {DATASET_JSON}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to be a dataset description") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: must hold a JSON object")
    for key in ("channel_names", "labels", "file_ending"):
        if key not in data:
            raise InputError(f"{path}: missing '{key}'")
    channels = data["channel_names"]
    if not isinstance(channels, dict) or not channels:
        raise InputError(f"{path}: 'channel_names' must be an object such as {{\"0\": \"T1\"}}")
    if data["file_ending"] != FILE_ENDING:
        raise InputError(f"{path}: file_ending {data['file_ending']!r} is not supported (only {FILE_ENDING})")
    num = data.get("numTraining", 0)
    known = ("channel_names", "labels", "numTraining", "file_ending", "name")
    extra = {k: v for k, v in data.items() if k not in known}
    return DatasetInfo(folder, {str(k): str(v) for k, v in channels.items()}, _check_labels(data["labels"], str(path)),
                       int(num) if isinstance(num, int) else 0, FILE_ENDING, data.get("name"), extra)


def save_dataset(info: DatasetInfo) -> Path:
    """Write ``dataset.json`` atomically."""
    from ..io.staging import write_json_atomic

    path = info.folder / DATASET_JSON
    write_json_atomic(path, info.to_dict())
    return path


def create_dataset(folder: PathLike, labels: Mapping[str, int], channel_names: Sequence[str] = ("image",),
                   name: Optional[str] = None) -> DatasetInfo:
    """Create an empty dataset (folders and ``dataset.json``); an existing dataset is refused."""
    folder = Path(folder)
    if (folder / DATASET_JSON).exists():
        raise InputError(f"{folder} holds a dataset already")
    full = {"background": 0, **{str(k): int(v) for k, v in labels.items() if str(k) != "background"}}
    info = DatasetInfo(folder, {str(i): str(c) for i, c in enumerate(channel_names)},
                       _check_labels(full, str(folder / DATASET_JSON)), 0, FILE_ENDING, name or folder.name)
    for sub in (IMAGES, LABELS, PROVENANCE):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    save_dataset(info)
    return info
