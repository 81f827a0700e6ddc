"""Training datasets in nnU-Net v2's raw layout, built from corrected segmentations.

A dataset folder holds ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz`` and
``dataset.json`` (channel names, label names → values, number of cases, file ending), so nnU-Net
and MONAI read it as is. SegmentAI adds ``provenance/<case>.json`` (source files and their
SHA-256, the model that produced the draft, the time), which both of them ignore.
"""

from .cases import CaseInfo, add_case, find_duplicate, list_cases, voxel_sha256
from .layout import (
    DATASET_JSON, FILE_ENDING, DatasetInfo, create_dataset, image_path, label_path, load_dataset, provenance_path,
)
from .validate import validate_dataset

__all__ = [
    "DATASET_JSON",
    "FILE_ENDING",
    "CaseInfo",
    "DatasetInfo",
    "add_case",
    "create_dataset",
    "find_duplicate",
    "image_path",
    "label_path",
    "list_cases",
    "load_dataset",
    "provenance_path",
    "validate_dataset",
    "voxel_sha256",
]
