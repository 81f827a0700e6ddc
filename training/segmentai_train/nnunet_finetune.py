"""Fine-tuning an imported nnU-Net v2 model: same network, same preprocessing, plans kept.

The network is rebuilt from the package's recorded plans arguments (the core's
``nnunet_network``) with one fold's weights (the first, or ``--nnunet-fold``), deep supervision
off, so the loss sees one full-resolution output. Training cases go through the core's
:func:`~segmentai_core.inference.nnunet_pipeline.preprocess_nnunet` (transpose, non-zero crop,
the plans' normalisation with the fingerprint's CT intensities, resampling to the plans' spacing);
label maps follow on the same grid with the plans' segmentation resampling. Patches have the plans'
patch size. Labels must be the model's own (``dataset.json``): the plans, dataset.json and
fingerprint are copied into the new package byte for byte, so the engine runs it through the same
nnU-Net pipeline.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from segmentai_core.errors import InputError, ModelError, OutputError
from segmentai_core.io.staging import staged_folder
from segmentai_core.volume import Volume

from .finetune_setup import FinetuneSetup
from .sampling import CanonicalCase

__all__ = ["nnunet_setup", "pick_fold", "resample_labels", "check_labels", "write_nnunet_package"]

KEPT_FOLDER = "nnunet"  # where the importer keeps plans.json, dataset.json, dataset_fingerprint.json


def pick_fold(folds: Sequence[str], wanted: Optional[str]) -> str:
    """The fold to start from: ``wanted`` (``0`` or ``fold_0``) or the first one."""
    if wanted is None:
        return folds[0]
    name = str(wanted) if str(wanted).startswith("fold_") else f"fold_{wanted}"
    if name not in folds:
        raise InputError(f"--nnunet-fold {wanted}: the model has folds {', '.join(f[5:] for f in folds)}")
    return name


def check_labels(model_labels: Dict[int, str], data_labels: Dict[int, str], model_id: str) -> None:
    """The dataset must label the model's classes, value for value and name for name."""
    def text(labels: Dict[int, str]) -> str:
        return ", ".join(f"{v}={n}" for v, n in sorted(labels.items())) or "none"

    same = sorted(model_labels) == sorted(data_labels) and all(
        model_labels[v].strip().lower() == data_labels[v].strip().lower() for v in model_labels)
    if not same:
        raise InputError(f"the dataset's labels ({text(data_labels)}) differ from the nnU-Net model '{model_id}' "
                         f"({text(model_labels)}); an imported nnU-Net model is fine-tuned on its own label set")


def resample_labels(labels: np.ndarray, new_shape: Sequence[int], spacing: Sequence[float],
                    target: Sequence[float], order: int = 1, order_z: int = 0,
                    force_separate_z: Optional[bool] = None) -> np.ndarray:
    """nnU-Net's label resampling: each label's mask resampled (linear, nearest across slices),
    kept where it reaches 0.5, painted in value order. Reuses the core's nnU-Net resampling."""
    from segmentai_core.inference.nnunet_resample import resample_nnunet

    if tuple(labels.shape) == tuple(new_shape):
        return labels.astype(np.uint8)
    out = np.zeros(tuple(new_shape), dtype=np.uint8)
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = (labels == value).astype(np.float32)[None]
        resized = resample_nnunet(mask, new_shape, spacing, target, order, order_z, force_separate_z)[0]
        out[resized >= 0.5] = value
    return out


def _seg_resampling(package_folder: Path, configuration: str) -> Dict[str, Any]:
    """The plans' ``resampling_fn_seg_kwargs`` (inheritance followed), nnU-Net's defaults otherwise."""
    defaults = {"order": 1, "order_z": 0, "force_separate_z": None}
    path = package_folder / KEPT_FOLDER / "plans.json"
    if not path.is_file():
        return defaults
    configurations = json.loads(path.read_text(encoding="utf-8")).get("configurations", {})
    name, seen = configuration, set()
    while name and name not in seen:
        seen.add(name)
        entry = configurations.get(name) or {}
        if isinstance(entry.get("resampling_fn_seg_kwargs"), dict):
            kwargs = entry["resampling_fn_seg_kwargs"]
            return {key: kwargs.get(key, value) for key, value in defaults.items()}
        name = entry.get("inherits_from")
    return defaults


def _preparer(config: Dict[str, Any], seg: Dict[str, Any]):
    from segmentai_core.inference.nnunet_pipeline import preprocess_nnunet

    forward = [int(a) for a in config["transpose_forward"]]

    def prepare(image: Volume, label: Volume) -> Tuple[np.ndarray, np.ndarray]:
        prepared = preprocess_nnunet(image, config)
        values = np.transpose(np.asarray(label.array), forward)[prepared.box]
        values = resample_labels(values, prepared.data.shape[1:], prepared.spacing, prepared.target,
                                 int(seg["order"]), int(seg["order_z"]), seg["force_separate_z"])
        return prepared.data[0], values

    return prepare


def sliding_window_dice(network: torch.nn.Module, cases: Sequence[CanonicalCase], num_classes: int,
                        patch: Sequence[int], device: torch.device) -> float:
    """Mean foreground Dice over cases, predicted as the pipeline does (Gaussian windows, step 0.5),
    without mirroring, on the preprocessed grid."""
    from segmentai_core.inference.nnunet_windows import predict_logits
    from segmentai_core.progress import Progress

    from .validation import case_dice

    network.eval()
    scores: List[float] = []
    for case in cases:
        logits = predict_logits(network, case.image[None], patch, num_classes, [], device, Progress(),
                                precision="float32")
        scores.append(float(np.mean(case_dice(logits.argmax(0), case.label, num_classes))))
    return float(np.mean(scores)) if scores else float("nan")


def write_nnunet_package(source, fold: str, folder: Path, manifest: Dict[str, Any],
                         state: Dict[str, torch.Tensor]):
    """Write the new package with the parent's ``nnunet/`` files copied unchanged; whole or nothing."""
    from segmentai_core.models.package import ModelPackage, write_model_package

    folder = Path(folder)
    if folder.exists():
        raise OutputError(f"{folder} exists already; choose a new folder for the model package")
    manifest = copy.deepcopy(manifest)
    manifest["architecture"]["args"]["folds"] = [fold]
    block = manifest["x-nnunet"]
    # The source checkpoints' hashes describe the parent; the kept nnU-Net files are unchanged.
    block["files"] = {k: v for k, v in (block.get("files") or {}).items() if "/" not in k}
    block["finetuned_from_fold"] = fold
    with staged_folder(folder, "model package") as staging:  # whole or nothing
        write_model_package(staging, manifest, state)
        kept = Path(source.folder) / KEPT_FOLDER
        if kept.is_dir():
            shutil.copytree(kept, staging / KEPT_FOLDER)
    return ModelPackage.open(folder)


def nnunet_setup(source, data: Path, config, device: torch.device) -> FinetuneSetup:
    """Everything :func:`~.finetune.finetune` needs to fine-tune the imported nnU-Net ``source``.

    Refuses, before reading any case or writing anything: region-based models, multi-channel
    models, 2d configurations, a ``--patch-size`` (the plans' patch is used) and a dataset whose labels differ.
    """
    from segmentai_core.dataset import load_dataset
    from segmentai_core.models.nnunet_network import build_nnunet_ensemble

    from .data import load_training_data

    manifest = source.manifest
    block = manifest.extensions.get("x-nnunet")
    if not isinstance(block, dict):
        raise ModelError(f"model '{manifest.id}' is an nnU-Net model without its 'x-nnunet' block")
    if block.get("regions_class_order"):
        raise InputError(f"model '{manifest.id}' is a region-based nnU-Net model (overlapping regions, sigmoid "
                         "outputs): fine-tuning supports plain label maps only")
    if int(block.get("in_channels", 1)) != 1:
        raise InputError(f"model '{manifest.id}' needs {block['in_channels']} input channels; fine-tuning uses one")
    if len(block.get("patch_size") or []) != 3:
        raise InputError(f"model '{manifest.id}' is an nnU-Net {block.get('configuration')} (2D) model: "
                         "fine-tuning supports 3d nnU-Net configurations only")
    if config.patch_size:
        raise InputError("--patch-size does not apply to nnU-Net models: the plans' patch size is used")
    check_labels({label.value: label.name for label in manifest.labels}, load_dataset(Path(data)).foreground,
                 manifest.id)
    args = copy.deepcopy(dict(manifest.architecture.get("args") or {}))
    fold = pick_fold([str(f) for f in args.get("folds", [])], config.source_fold)

    training = load_training_data(Path(data), manifest.preprocessing,
                                  _preparer(block, _seg_resampling(Path(source.folder), block["configuration"])))
    weights = source.load_network("cpu").state_dict()
    args["folds"] = [fold]
    network = build_nnunet_ensemble(args)
    prefix = f"folds.{fold}."
    network.load_state_dict({k: v for k, v in weights.items() if k.startswith(prefix)}, strict=True)
    num_classes = int(block["num_heads"])
    patch = tuple(int(p) for p in block["patch_size"])

    def evaluate(net: torch.nn.Module, cases: Sequence[CanonicalCase]) -> float:
        return sliding_window_dice(net, cases, num_classes, patch, device)

    def write(folder: Path, manifest_dict: Dict[str, Any], state: Dict[str, torch.Tensor]):
        return write_nnunet_package(source, fold, folder, manifest_dict, state)

    return FinetuneSetup(training, network, num_classes, True, patch, evaluate, "nnUNet", write,
                         grid="nnU-Net preprocessed grid, no mirroring")
