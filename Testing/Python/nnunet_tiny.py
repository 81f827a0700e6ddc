"""Trains a tiny nnU-Net v2 model with ``nnunetv2`` itself (test and benchmark helper, not a test).

The generated dataset is anisotropic along the *i* axis (so nnU-Net's ``transpose_forward`` is
not the identity and its separate-z resampling runs), CT-like (channel "CT", so
``CTNormalization`` with the fingerprint's percentiles is used), and has two labels. One
planning step gives both the ``3d_fullres`` and the ``2d`` configuration; either can be trained. Everything
lives under one folder given by the caller; ``nnunetv2`` reads its paths from environment
variables when it is first imported, so :func:`set_nnunet_env` must run before that import.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

DATASET_ID = 501
DATASET_NAME = f"Dataset{DATASET_ID}_SegmentAITiny"
SPACING_XYZ = (3.5, 1.0, 1.0)  # mm along i, j, k: the low-resolution axis is i


def set_nnunet_env(root: Path, processes: int = 1) -> None:
    """Point nnU-Net's folders at ``root`` and keep it to the given number of processes."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / name)
    os.environ["nnUNet_n_proc_DA"] = "0"
    os.environ["nnUNet_def_n_proc"] = str(processes)
    os.environ.setdefault("nnUNet_compile", "false")


def phantom(shape_kji: Tuple[int, int, int], seed: int, spacing_xyz=SPACING_XYZ) -> Tuple[np.ndarray, np.ndarray]:
    """A CT-like image (HU-ish, int16) with two blobs, and its label map (1 bright sphere, 2 dark box)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape_kji], indexing="ij")
    sx, sy, sz = spacing_xyz
    z, y, x = k * sz, j * sy, i * sx
    extent = np.array(shape_kji) * np.array([sz, sy, sx])
    labels = np.zeros(shape_kji, dtype=np.uint8)
    # A bright sphere in one half of the volume and a dark box in the other, both large.
    centre = extent * np.array([rng.uniform(0.62, 0.7), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)])
    radius = rng.uniform(0.2, 0.25) * extent.min()
    labels[((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < radius**2] = 1
    low = extent * np.array([rng.uniform(0.05, 0.1), rng.uniform(0.15, 0.25), rng.uniform(0.15, 0.25)])
    high = low + extent * np.array([0.3, 0.5, 0.5])
    box = (z > low[0]) & (z < high[0]) & (y > low[1]) & (y < high[1]) & (x > low[2]) & (x < high[2])
    labels[box & (labels == 0)] = 2
    image = rng.normal(40.0, 20.0, shape_kji).astype(np.float32)
    image[labels == 1] += 300.0
    image[labels == 2] -= 150.0
    return image.astype(np.int16), labels


def write_nifti(array: np.ndarray, path: Path, spacing_xyz=SPACING_XYZ, origin=(0.0, 0.0, 0.0)) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def make_dataset(root: Path, cases: int = 8, shape_kji=(32, 32, 12)) -> Path:
    """Write ``nnUNet_raw/<DATASET_NAME>`` with ``cases`` training cases; returns its folder."""
    folder = Path(os.environ["nnUNet_raw"]) / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    for n in range(cases):
        image, labels = phantom(shape_kji, seed=n)
        write_nifti(image, folder / "imagesTr" / f"case_{n:03d}_0000.nii.gz")
        write_nifti(labels, folder / "labelsTr" / f"case_{n:03d}.nii.gz")
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "bright": 1, "dark": 2},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return folder


def _shrink(config: Dict, features) -> None:
    """Fewer, narrower stages: the smallest network that still has the plans' structure."""
    arch = config["architecture"]["arch_kwargs"]
    stages = min(len(features), arch["n_stages"])
    arch["n_stages"] = stages
    arch["features_per_stage"] = list(features[:stages])
    for key in ("kernel_sizes", "strides", "n_conv_per_stage"):
        arch[key] = arch[key][:stages]
    arch["n_conv_per_stage_decoder"] = arch["n_conv_per_stage_decoder"][: stages - 1]
    divisor = np.prod(np.array(arch["strides"]), axis=0)
    config["patch_size"] = [int(max(d, (p // d) * d)) for p, d in zip(config["patch_size"], divisor)]


def plan(features=(4, 8, 16)) -> Dict:
    """Fingerprint and plan (nnU-Net plans ``2d`` and ``3d_fullres`` in one step), both with a small
    network; returns the plans."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments

    extract_fingerprints([DATASET_ID], num_processes=1, verbose=False, show_progress_bar=False)
    data_augmentation_processes = os.environ["nnUNet_n_proc_DA"]
    os.environ["nnUNet_n_proc_DA"] = "1"  # the planner passes it to torch.set_num_threads, which refuses 0
    try:
        plan_experiments([DATASET_ID])
    finally:
        os.environ["nnUNet_n_proc_DA"] = data_augmentation_processes
    plans_path = Path(os.environ["nnUNet_preprocessed"]) / DATASET_NAME / "nnUNetPlans.json"
    plans = json.loads(plans_path.read_text(encoding="utf-8"))
    for name in ("3d_fullres", "2d"):
        _shrink(plans["configurations"][name], features)
    plans_path.write_text(json.dumps(plans, indent=2))
    return plans


def train(epochs: int = 3, iterations: int = 10, fold: int = 0, configuration: str = "3d_fullres",
          batch_size: int = 2) -> Path:
    """Train fold ``fold`` of ``configuration`` with the plain nnUNetTrainer on CPU; returns the model folder."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / DATASET_NAME
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text(encoding="utf-8"))
    dataset_json = json.loads((preprocessed / "dataset.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False  # the trainer pops this key (its command line sets it)
    trainer = nnUNetTrainer(plans, configuration, fold, dataset_json, device=torch.device("cpu"))
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = 2
    trainer.batch_size = batch_size

    def adam():  # a few dozen iterations: Adam learns the phantom where nnU-Net's SGD needs hundreds
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

        optimizer = torch.optim.Adam(trainer.network.parameters(), lr=1e-2)
        return optimizer, PolyLRScheduler(optimizer, 1e-2, trainer.num_epochs)

    trainer.configure_optimizers = adam  # an instance attribute: the checkpoint still names nnUNetTrainer
    random.seed(fold)
    np.random.seed(fold)
    torch.manual_seed(fold)
    trainer.run_training()
    return Path(trainer.output_folder).parent


def add_perturbed_fold(model_folder: Path, source_fold: int = 0, new_fold: int = 1, scale: float = 0.05) -> None:
    """A second fold made from the first with slightly changed weights, to test fold ensembling.

    Test code loading its own checkpoint: ``weights_only=False`` is safe here.
    """
    import torch

    source = model_folder / f"fold_{source_fold}" / "checkpoint_final.pth"
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(new_fold)
    weights = checkpoint["network_weights"]
    for key, value in weights.items():
        if value.is_floating_point():
            weights[key] = value + scale * value.std().nan_to_num() * torch.randn(value.shape, generator=generator)
    target = model_folder / f"fold_{new_fold}"
    target.mkdir(exist_ok=True)
    torch.save(checkpoint, target / "checkpoint_final.pth")


_PLANNED: set = set()  # dataset settings written and planned in this process
_PREPROCESSED: set = set()  # (dataset settings, configuration)
_BUILT: Dict[tuple, Path] = {}


def _clean(model: Path) -> None:
    for extra in ("fold_0/validation", "fold_0/debug.json"):
        path = model / extra
        if path.is_dir():
            shutil.rmtree(path)


def build_tiny_model(root: Path, cases: int = 8, epochs: int = 8, iterations: int = 10,
                     shape_kji=(32, 32, 12), features=(4, 8, 16), configuration: str = "3d_fullres",
                     batch_size: int = 2) -> Path:
    """Dataset → plans → preprocessing → training (fold 0) → a perturbed fold 1; returns the model folder.

    Built once per process for the same settings: ``nnunetv2`` fixes its folders when first
    imported, so a second build under another root would overwrite the first (callers that
    change the model folder work on a copy). The dataset is written and planned once per
    process (the first caller's ``root``); each configuration (``3d_fullres``, ``2d``) is then
    preprocessed and trained in those same folders, so the two models of one process share data.
    """
    key = (cases, epochs, iterations, tuple(shape_kji), tuple(features), configuration, batch_size)
    if key in _BUILT and _BUILT[key].is_dir():
        return _BUILT[key]
    data_key = (cases, tuple(shape_kji), tuple(features))
    if data_key not in _PLANNED:
        set_nnunet_env(root)
        make_dataset(root, cases, shape_kji)
        plan(features)
        _PLANNED.add(data_key)
    if (data_key, configuration) not in _PREPROCESSED:
        from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess

        preprocess([DATASET_ID], configurations=(configuration,), num_processes=(1,), show_progress_bar=False)
        _PREPROCESSED.add((data_key, configuration))
    model = train(epochs, iterations, configuration=configuration, batch_size=batch_size)
    add_perturbed_fold(model)
    _clean(model)
    _BUILT[key] = model
    return model


if __name__ == "__main__":  # python Testing/Python/nnunet_tiny.py OUTPUT_FOLDER [K J I [F1 F2 ...]]
    import sys
    import time

    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    numbers = [int(v) for v in sys.argv[2:]]
    shape = tuple(numbers[:3]) if len(numbers) >= 3 else (32, 32, 12)
    widths = tuple(numbers[3:]) if len(numbers) > 3 else (4, 8, 16)
    model = build_tiny_model(Path(sys.argv[1]).resolve(), shape_kji=shape, features=widths)
    print(model)
    print(f"{time.perf_counter() - start:.1f} s", file=sys.stderr)


def reference_predictor(model_folder, folds=(0, 1)):
    """nnunetv2's own ``nnUNetPredictor`` on CPU for ``model_folder`` (Gaussian windows at step 0.5,
    mirroring): the reference that the parity tests compare SegmentAI with."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=tuple(folds),
                                                   checkpoint_name="checkpoint_final.pth")
    return predictor
