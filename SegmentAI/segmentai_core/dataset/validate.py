"""Checks of a whole dataset: pairing, geometry, label values, empty labels and duplicate images, one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Union

import numpy as np

from ..errors import SegmentAIError
from .cases import voxel_sha256
from .layout import DATASET_JSON, case_ids_on_disk, image_path, label_path, load_dataset

__all__ = ["validate_dataset"]


def validate_dataset(dataset_dir: Union[str, Path]) -> List[str]:
    """Every problem found in the dataset, one readable line each (empty list: the dataset is usable).

    Raises InputError only when ``dataset.json`` itself is missing or unreadable.
    """
    from ..io import read_volume

    folder = Path(dataset_dir)
    info = load_dataset(folder)
    problems: List[str] = []
    on_disk = case_ids_on_disk(folder)
    images, labels = set(on_disk["images"]), set(on_disk["labels"])
    for case_id in sorted(images - labels):
        problems.append(f"{image_path(folder, case_id).relative_to(folder)}: image has no label file")
    for case_id in sorted(labels - images):
        problems.append(f"{label_path(folder, case_id).relative_to(folder)}: label file has no image")
    extra_channels = len(info.channel_names) - 1
    allowed = sorted(info.labels.values())
    seen: Dict[str, str] = {}  # voxel hash -> first case with it
    for case_id in sorted(images & labels):
        image_file, label_file = image_path(folder, case_id), label_path(folder, case_id)
        where = label_file.relative_to(folder)
        try:
            image = read_volume(image_file)
            label = read_volume(label_file)
        except SegmentAIError as error:
            problems.append(str(error))
            continue
        if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).any():
            problems.append(f"{image_file.relative_to(folder)}: every voxel is NaN or infinite (no usable image)")
        digest = voxel_sha256(np.asarray(image.array))
        if digest in seen:
            problems.append(f"{image_file.relative_to(folder)}: same image as {seen[digest]} (identical voxels): "
                            "it can land in training and validation at once; remove one of them")
        else:
            seen[digest] = case_id
        for channel in range(1, extra_channels + 1):
            if not image_path(folder, case_id, channel).exists():
                problems.append(f"{image_path(folder, case_id, channel).relative_to(folder)}: channel file missing")
        if not image.geometry.same_grid(label.geometry, tolerance_mm=1e-2):
            problems.append(f"{where}: geometry differs from its image ({label.geometry.describe()} vs "
                            f"{image.geometry.describe()})")
        array = label.array
        if not np.issubdtype(array.dtype, np.integer) and not np.array_equal(array, np.round(array)):
            problems.append(f"{where}: holds non-integer values")
            continue
        values = [int(v) for v in np.unique(array)]
        unknown = [v for v in values if v not in allowed]
        if unknown:
            problems.append(f"{where}: label value(s) {', '.join(map(str, unknown))} not in {DATASET_JSON} labels "
                            f"({', '.join(map(str, allowed))})")
        if not any(v > 0 for v in values):
            problems.append(f"{where}: empty label map (no labelled voxels)")
    count = len(images & labels)
    if info.num_training != count:
        problems.append(f"{DATASET_JSON}: numTraining is {info.num_training} but {count} complete case(s) were found")
    return problems
