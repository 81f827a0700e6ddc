"""Inputs and checks shared by the adversarial probes (``test_adversarial*.py``): small images,
masks, datasets, fake nnU-Net folders, an unwritable folder, folder snapshots, and the private
SegmentAI home every probe runs with."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import SimpleITK as sitk

# --- inputs -------------------------------------------------------------------------------------

def _image_array(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.normal(100, 10, (20, 22, 24)).astype(np.float32)
    array[6:14, 6:14, 6:14] += 80
    return array


def write_nrrd(path: Path, array: Optional[np.ndarray] = None, spacing=(1.0, 1.0, 1.0)) -> Path:
    image = sitk.GetImageFromArray(_image_array() if array is None else array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def write_nifti_raw(path: Path, array_kji: np.ndarray) -> Path:
    """A NIfTI written by nibabel (NaN kept as NaN on disk; SimpleITK would read them as 0)."""
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(array_kji.T), np.diag([-1.0, -1.0, 1.0, 1.0])), str(path))
    return path


def write_mask(path: Path, like: Path) -> Path:
    reference = sitk.ReadImage(str(like))
    array = (sitk.GetArrayFromImage(reference) > 150).astype(np.uint8)
    array[8:12, 8:12, 8:12] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(reference)
    sitk.WriteImage(mask, str(path))
    return path


def nrrd_with_grid(path: Path, directions: str) -> Path:
    """A raw NRRD whose header gives ``directions`` verbatim (zero-length or coinciding axes)."""
    array = _image_array()
    header = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 24 22 20\n"
              f"space directions: {directions}\nkinds: domain domain domain\nendian: little\nencoding: raw\n"
              "space origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + array.astype("<f4").tobytes())
    return path


def make_dataset(folder: Path, count: int = 2, name: str = "Object") -> Path:
    from segmentai_core.dataset import add_case
    from segmentai_core.phantoms import blob_phantom

    for seed in range(count):
        image, mask = blob_phantom(shape=(24, 28, 26), seed=seed)
        add_case(folder, image, mask, {1: name}, {"draft_model": "tiny-test@0.0.1"})
    return folder


def fake_nnunet_folder(folder: Path, plans: dict, labels: Optional[dict] = None) -> Path:
    """An nnU-Net v2 model folder whose checkpoint holds no weights: the importer reads the JSON first."""
    import torch

    (folder / "fold_0").mkdir(parents=True)
    dataset = {"channel_names": {"0": "CT"}, "labels": labels or {"background": 0, "Liver": 1},
               "numTraining": 1, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "plans.json").write_text(json.dumps(plans))
    torch.save({"network_weights": {}, "init_args": {"configuration": "3d_fullres"}, "trainer_name": "nnUNetTrainer"},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def unwritable_folder(work: Path) -> Path:
    """A folder nothing can be created in: read-only for a normal user; /sys/kernel as root."""
    if os.geteuid() != 0:
        folder = work / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return Path("/sys/kernel")


# --- comparing ----------------------------------------------------------------------

def snapshot(folder: Path) -> Dict[str, str]:
    """Every file, link and folder under ``folder`` with its content hash (links: their target)."""
    state: Dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                state[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                state[rel] = "dir"
            elif path.stat().st_size > 64 << 20:  # a sparse 50 GB file: its size and time tell
                state[rel] = f"big:{path.stat().st_size}:{path.stat().st_mtime_ns}"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def changed(before: Dict[str, str], after: Dict[str, str]) -> set:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}



@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """SegmentAI's home (models/, trust decisions) inside the probe folder: a probe must not create it either."""
    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "work" / "home"))
