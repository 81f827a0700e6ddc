"""A dataset folder (nnU-Net v2 raw layout) as canonical training cases for one model.

Images and labels go through the core's ``prepare_input``/``prepare_label`` with the model's own
preprocessing (or, for imported nnU-Net models, the core's nnU-Net preprocessing: see
``nnunet_finetune``), so training sees exactly what the engine will feed the network at inference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from segmentai_core.dataset import DatasetInfo, list_cases, load_dataset, validate_dataset
from segmentai_core.errors import InputError
from segmentai_core.volume import Volume

from .sampling import CanonicalCase

__all__ = ["TrainingData", "load_training_data", "dataset_sha256", "split_cases", "CasePreparer"]

CasePreparer = Callable[[Volume, Volume], Tuple[np.ndarray, np.ndarray]]
"""(image, label map) as read → (network-space image [k, j, i] float32, label values on the same grid)."""

Planner = Callable[[List[Tuple[Volume, Volume]], DatasetInfo], Mapping]
"""(every case as read, the dataset's description) → the preprocessing to prepare them with."""


@dataclass
class TrainingData:
    """Canonical cases plus the class order: ``class_names[c]`` is network output channel ``c + 1``."""

    cases: List[CanonicalCase]
    class_names: List[str]
    class_values: List[int]
    sha256: str
    dataset_name: str


def dataset_sha256(folder: Path) -> str:
    """SHA-256 over ``dataset.json`` and every image and label file (names and bytes, sorted)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    files = [folder / "dataset.json"] + sorted((folder / "imagesTr").glob("*.nii.gz")) + sorted(
        (folder / "labelsTr").glob("*.nii.gz"))
    for path in files:
        if path.name.startswith("."):
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _canonical_preparer(preprocessing: Mapping) -> CasePreparer:
    from segmentai_core.inference.preprocess import prepare_input, prepare_label

    def prepare(image: Volume, label: Volume) -> Tuple[np.ndarray, np.ndarray]:
        prepared = prepare_input(image, preprocessing)
        return prepared.array.astype(np.float32), prepare_label(label, prepared.canonical)

    return prepare


def load_training_data(folder: Path, preprocessing: Mapping, prepare: Optional[CasePreparer] = None,
                       planner: Optional[Planner] = None) -> TrainingData:
    """Validate the dataset, then read every case onto the model's canonical grid.

    ``prepare`` replaces the canonical-grid preparation from ``preprocessing`` (imported nnU-Net
    models use their own). ``planner`` sees every case as read and returns the preprocessing to
    use instead of ``preprocessing`` (the data-aware set-up of :mod:`.data_plan`). Label values
    are mapped to contiguous class indices (background 0, then labels by value).
    """
    from segmentai_core.io import read_volume

    folder = Path(folder)
    problems = validate_dataset(folder)
    if problems:
        more = f" (and {len(problems) - 1} more; run 'segmentai dataset validate')" if len(problems) > 1 else ""
        raise InputError(f"dataset {folder}: {problems[0]}{more}")
    info = load_dataset(folder)
    if len(info.channel_names) != 1:
        raise InputError(f"dataset {folder}: {len(info.channel_names)} channels; fine-tuning supports one")
    foreground = info.foreground
    lut = np.zeros(max(foreground, default=0) + 1, dtype=np.uint8)
    for index, value in enumerate(foreground, start=1):
        lut[value] = index
    listed = list_cases(folder)
    if not listed:
        raise InputError(f"dataset {folder} has no cases; add some with 'segmentai dataset add'")
    raw = [(read_volume(case.image), read_volume(case.label)) for case in listed]
    if planner is not None:
        preprocessing = planner(raw, info)
    prepare = prepare or _canonical_preparer(preprocessing)
    cases = []
    for case in listed:
        array, values = prepare(*raw.pop(0))  # each raw pair is dropped once prepared
        classes = lut[values.astype(np.int64)]
        cases.append(CanonicalCase(case.case_id, array.astype(np.float32, copy=False), classes))
    return TrainingData(cases, list(foreground.values()), list(foreground), dataset_sha256(folder),
                        info.name or folder.name)


def split_cases(cases: Sequence[CanonicalCase], val_fraction: float, folds: int = 0, fold: int = 0,
                seed: int = 0) -> Tuple[List[CanonicalCase], List[CanonicalCase], str]:
    """Training and validation cases, and how validation is done (``held-out`` or ``in-sample``).

    ``folds`` > 1 takes fold ``fold`` of a seeded k-fold split; otherwise ``val_fraction`` of the
    cases (at least one) is held out. With a single case, or ``val_fraction`` 0, the model is
    validated on its training cases, and the result says so.
    """
    cases = list(cases)
    order = np.random.default_rng(seed).permutation(len(cases))
    shuffled = [cases[i] for i in order]
    if folds and folds > 1:
        if len(cases) < folds:
            raise InputError(f"--folds {folds} needs at least {folds} cases (the dataset has {len(cases)})")
        if not 0 <= fold < folds:
            raise InputError(f"--fold must be between 0 and {folds - 1}")
        val = shuffled[fold::folds]
        train = [c for c in shuffled if all(c is not v for v in val)]
        return train, val, "held-out"
    if len(cases) < 2 or val_fraction <= 0:
        return cases, cases, "in-sample"
    count = min(len(cases) - 1, max(1, int(round(len(cases) * val_fraction))))
    return shuffled[count:], shuffled[:count], "held-out"
