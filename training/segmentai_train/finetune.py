"""Fine-tuning a model package on a dataset of corrected cases: ``finetune(...)`` and its trainer.

Transfer learning keeps the source network's weights (re-initialising only the segmentation head
for a new label set), optionally freezes the encoder for the first epochs and gives it a lower
learning rate. Loss Dice + cross-entropy on foreground-oversampled, augmented patches; AdamW or
SGD with Nesterov momentum, warm-up then cosine or poly decay; AMP on CUDA; gradient
accumulation; DDP under ``torchrun``. Validation Dice each epoch, early stopping, a checkpoint
each epoch for ``resume``; the result is a NEW model package naming its parent. What depends on
the kind of source model (SegmentAI's own networks or an imported nnU-Net model) comes from
:mod:`.model_setup`; what depends on the cases (modality, CT window, spacing, patch,
postprocessing) from :mod:`.data_plan`; with one or two cases validation is on a held-aside part
of each (:mod:`.holdout`). The trainer itself is :mod:`.finetune_trainer`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from segmentai_core.errors import InputError, OutputError, SegmentAIError

from .distributed import DistContext, init_distributed, shutdown_distributed
from .finetune_config import FinetuneConfig
from .finetune_trainer import CHECKPOINT, FinetuneTrainer, batch_norms
from .sampling import recalibrate_batch_norm
from .shards import ShardedPatchSampler

__all__ = ["worse_warning", "FinetuneConfig", "FinetuneResult", "FinetuneTrainer", "PreparedRun", "finetune",
           "prepare_run", "train_run", "package_run"]

PACKAGE_DIR = "model"
PREPARE_MESSAGE_DELAY_S = 2.0  # the "reading the cases" line, when preparation takes longer than this


@dataclass
class FinetuneResult:
    package_dir: Optional[Path]
    val_dice_before: float
    val_dice_after: float
    epochs: int
    history: List[Dict[str, float]] = field(default_factory=list)
    worse_than_parent: bool = False  # validation Dice after < before
    model: Optional[str] = None  # id@version of the package written
    parent: Optional[str] = None  # id@version of the parent


def worse_warning(result: FinetuneResult) -> str:
    """The loud, several-line message for a fine-tuned model that validated worse than its parent."""
    from segmentai_core.models.manifest import version_key

    drop = result.val_dice_after - result.val_dice_before
    model_id, _, version = (result.model or "").partition("@")
    parent_id, _, parent_version = (result.parent or "").partition("@")
    lines = ["WARNING: the fine-tuned model is WORSE than its parent on validation: Dice "
             f"{result.val_dice_before:.4f} -> {result.val_dice_after:.4f} ({drop:+.4f})."]
    if model_id == parent_id and version_key(version) > version_key(parent_version):
        lines.append(f"  Written as {result.model}: once imported it outranks {result.parent} for "
                     f"'--model {parent_id}' (you asked for that version or passed --accept-worse).")
    else:
        lines += [f"  Written as {result.model}; {result.parent} stays the default for '--model {parent_id}'.",
                  f"  To use it anyway: --model {result.package_dir}, or import it and name it {result.model}; "
                  "to publish it as the next version, rerun with --accept-worse."]
    return "\n".join(lines)


def _loss(num_classes: int, class_weights: Optional[List[float]]) -> torch.nn.Module:
    from monai.losses import DiceCELoss

    kwargs: Dict[str, Any] = {"to_onehot_y": True, "softmax": True}
    if class_weights:
        if len(class_weights) != num_classes:
            raise InputError(f"--class-weights needs {num_classes} numbers (background first)")
        name = "weight" if "weight" in inspect.signature(DiceCELoss).parameters else "ce_weight"
        kwargs[name] = torch.tensor(class_weights, dtype=torch.float32)
    return DiceCELoss(**kwargs)


def _resolve_model(model: Union[str, Path, Any]):
    from segmentai_core.models.package import ModelPackage
    from segmentai_core.models.registry import ModelRegistry

    if isinstance(model, ModelPackage):
        return model
    return ModelRegistry().get(str(model))


def _check_numbers(config: FinetuneConfig) -> None:
    """NaN, infinite or out-of-range rates and fractions are refused before any work (one line)."""
    checks = [("--lr", config.learning_rate, 0.0, False), ("--encoder-lr-scale", config.encoder_lr_scale, 0.0, True),
              ("--val-fraction", config.val_fraction, 0.0, True),
              ("--holdout-fraction", config.holdout_fraction, 0.0, True)]
    if config.time_limit_s is not None:
        checks.append(("--minutes", config.time_limit_s, 0.0, False))
    for name, value, low, low_ok in checks:
        if not math.isfinite(value) or value < low or (value == low and not low_ok):
            raise InputError(f"{name} must be a {'non-negative' if low_ok else 'positive'} number, got {value}")
    if config.val_fraction >= 1:
        raise InputError(f"--val-fraction must be below 1, got {config.val_fraction}")
    if config.holdout_fraction >= 0.75:
        raise InputError(f"--holdout-fraction must be below 0.75, got {config.holdout_fraction}")
    if config.class_weights and not all(math.isfinite(w) and w >= 0 for w in config.class_weights):
        raise InputError(f"--class-weights must be non-negative numbers, got {config.class_weights}")


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to write a run into a folder that holds anything else, unless ``overwrite``.

    A folder holding an interrupted run (its checkpoint) is resumed with ``resume``; a missing
    or empty folder is used as is; an unwritable one is refused before any work.
    """
    from segmentai_core.io.staging import check_writable_folder

    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder for the run")
    if resume and (out / CHECKPOINT).exists():
        check_writable_folder(out, "run")
        return
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputError(f"--out {out} is not empty ({shown}); choose a new folder, or pass --overwrite to let "
                          "this run replace its files there")
    check_writable_folder(out, "run")


def finetune(model: Union[str, Path, Any], data: Union[str, Path], out: Union[str, Path],
             config: Optional[FinetuneConfig] = None, resume: bool = False, overwrite: bool = False,
             **overrides: Any) -> FinetuneResult:
    """Fine-tune ``model`` (id, id@version, folder or ModelPackage) on the dataset ``data``.

    Writes checkpoints, ``metrics.csv`` and ``training_curve.png`` to ``out`` and the new model
    package to ``out/model``; the source package is never modified. Keyword ``overrides`` set
    :class:`FinetuneConfig` fields. Under ``torchrun`` each process trains on its shard of every
    global batch and only rank 0 writes. ``out`` must be new or empty (or hold the interrupted run
    that ``resume`` continues) unless ``overwrite``. Three phases: :func:`prepare_run` (cases,
    network, split, trainer), :func:`train_run` and :func:`package_run`.
    """
    from segmentai_core.inference.device import select_device

    config = copy.deepcopy(config) if config is not None else FinetuneConfig()
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise TypeError(f"unknown fine-tuning option '{key}'")
        setattr(config, key, value)
    if config.epochs < 1 or config.iterations_per_epoch < 1 or config.batch_size < 1 or config.accumulate < 1:
        raise InputError("epochs, iterations, batch size and accumulation must be at least 1")
    out = Path(out)
    if (out / PACKAGE_DIR).exists():
        raise OutputError(f"{out / PACKAGE_DIR} exists already: this run has finished; choose a new --out folder")
    if (out / CHECKPOINT).exists() and not resume and not overwrite:
        raise OutputError(f"{out} holds an interrupted run ({CHECKPOINT}); pass --resume or choose a new --out folder")
    _check_numbers(config)
    _check_run_folder(out, resume, overwrite)

    device = select_device(config.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    try:
        run = prepare_run(model, Path(data), out, config, device, dist, resume)
        train_run(run)
        result = package_run(run)
        dist.barrier()
        return result
    finally:
        shutdown_distributed(dist)


@dataclass
class PreparedRun:
    """Everything a run needs between its phases."""

    config: FinetuneConfig
    out: Path
    device: torch.device
    dist: DistContext
    manifest: Any  # the parent's ModelManifest
    setup: Any  # model_setup.FinetuneSetup
    network: torch.nn.Module
    train_cases: List[Any]
    val_cases: List[Any]
    validation: str  # held-out, held-aside or in-sample
    trainer: FinetuneTrainer
    calibration: ShardedPatchSampler
    recalibrate: bool
    started: float
    say: Any
    patch_kji: Any = None  # the training patch (the data may have shrunk the setup's)
    flip_axis: Optional[int] = 2  # the left-right flip of augmentation (None: lateralised labels, none)


def prepare_run(model, data: Path, out: Path, config: FinetuneConfig, device: torch.device, dist: DistContext,
                resume: bool) -> PreparedRun:
    """Read and plan the cases, build the network, split training and validation, make the trainer,
    and measure the parent's validation Dice (or restore an interrupted run's state)."""
    from .model_setup import prepare_finetune
    from .transfer import parameter_groups

    say = _say if dist.is_main and not config.json_progress else (lambda text: None)
    started = time.monotonic()
    source = _resolve_model(model)
    manifest = source.manifest
    # Said only if preparing takes a while: a quick refusal (labels, configuration) stays one line.
    with _said_after(PREPARE_MESSAGE_DELAY_S, say, f"fine-tuning {manifest.full_id} on {data}: reading the cases "
                     "and resampling them to the model's grid..."):
        setup = prepare_finetune(source, data, config, device)
    network = setup.network
    if dist.enabled and device.type == "cuda" and config.bn_mode == "train":
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    network.to(device)
    train_cases, val_cases, validation = _split(setup.training.cases, config)
    patch_kji = setup.patch_kji
    if setup.divisor_kji:
        from .data_plan import fit_patch

        patch_kji, reason = fit_patch(patch_kji, [c.image.shape for c in train_cases], setup.divisor_kji)
        if reason:
            setup.plan_reasons.append(reason)
    flip_axis = _left_right_flip(setup, config)
    for reason in setup.plan_reasons:
        say(f"  data: {reason}")
    modality = setup.manifest_updates.get("modality", manifest.modality)
    sampler = ShardedPatchSampler(train_cases, patch_kji, config.batch_size, dist.rank, dist.world,
                                  config.foreground_fraction, config.seed, modality=modality, flip_axis=flip_axis)
    calibration = ShardedPatchSampler(train_cases, patch_kji, config.batch_size, 0, 1,
                                      config.foreground_fraction, config.seed + 7919, modality=modality,
                                      flip_axis=flip_axis)
    recalibrate = config.bn_mode == "train" and bool(batch_norms(network))

    def validate(net: torch.nn.Module) -> Dict[str, float]:
        if recalibrate:
            calibration.set_epoch(0)
            with torch.no_grad():
                recalibrate_batch_norm(net, _to_device(calibration, device), config.bn_batches)
        return {"val_dice": setup.evaluate(net, val_cases)}

    groups = parameter_groups(network, setup.architecture, config.encoder_lr_scale)
    deadline = None
    if config.fill_budget and config.time_limit_s:
        deadline = started + config.time_limit_s
        config.epochs = config.max_epochs  # until the first epoch has been timed
    anchor_weight = parent_anchor_weight(config, setup.keep_head)
    anchor = ({name: p.detach().clone() for name, p in network.named_parameters()}  # the parent's, before any resume
              if anchor_weight > 0 else None)
    trainer = FinetuneTrainer(network, _loss(setup.num_classes, config.class_weights), sampler, out, config, groups,
                              validate, device, dist, deadline=deadline, anchor=anchor, anchor_weight=anchor_weight)
    if anchor is not None:
        say(f"  weights pulled toward the parent's (L2-SP, weight {anchor_weight:g}): its own labels are trained")
    say(f"{len(train_cases)} training case(s), {len(val_cases)} validation case(s) ({validation}); "
        f"measuring the parent's validation Dice...")
    checkpoint = out / CHECKPOINT
    if resume and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)
    else:
        before = [setup.evaluate(network, val_cases)] if dist.is_main else [0.0]
        if dist.enabled:
            torch.distributed.broadcast_object_list(before, src=0)
        trainer.val_dice_before = before[0]
    return PreparedRun(config, out, device, dist, manifest, setup, network, train_cases, val_cases, validation,
                       trainer, calibration, recalibrate, started, say, tuple(patch_kji), flip_axis)


def train_run(run: PreparedRun) -> None:
    """Say the plan, then train (unless a resumed run had already stopped)."""
    from segmentai_core.cli.progress_bar import format_duration

    config, trainer = run.config, run.trainer
    if trainer.deadline is not None:
        plan_text = (f"filling the {format_duration(config.time_limit_s)} budget: after each epoch of "
                     f"{config.iterations_per_epoch} steps the epochs left are planned from the mean epoch time "
                     f"(at most {config.max_epochs})")
    else:
        plan_text = f"training epochs {trainer.start_epoch + 1}..{config.epochs} x {config.iterations_per_epoch} steps"
    stop_text = (f"; stops early when the validation has not gained for {config.patience} epochs"
                 + (" and for half of the planned epochs" if trainer.deadline is not None else "") if config.patience
                 else "")
    run.say(f"validation Dice before fine-tuning {trainer.val_dice_before:.4f}; {plan_text} (batch "
            f"{config.batch_size}) on {run.device}{stop_text} (prepared in "
            f"{format_duration(time.monotonic() - run.started)})")
    if run.dist.is_main and config.json_progress:
        print(json.dumps({"event": "start", "model": run.manifest.full_id, "cases": len(run.train_cases),
                          "val_cases": len(run.val_cases), "validation": run.validation,
                          "head": "kept" if run.setup.keep_head else "re-initialised",
                          "start_epoch": trainer.start_epoch, "epochs": config.epochs, "world_size": run.dist.world,
                          "val_dice_before": trainer.val_dice_before}), flush=True)
    if not trainer.stop_requested:
        trainer.fit()


def package_run(run: PreparedRun) -> FinetuneResult:
    """Load the chosen epoch's weights, validate them, and write the new package (rank 0 only)."""
    from .new_package import below_parent_version, finetuned_manifest

    config, trainer, setup, manifest, network = run.config, run.trainer, run.setup, run.manifest, run.network
    training = setup.training
    result = FinetuneResult(None, trainer.val_dice_before, float("nan"), len(trainer.history), trainer.history)
    if not run.dist.is_main:
        return result
    if trainer.best_state is not None:
        network.load_state_dict(trainer.best_state)  # weights and the statistics they were validated with
    elif run.recalibrate:
        recalibrate_batch_norm(network, _to_device(run.calibration, run.device), config.bn_batches * 4)
    threshold = _calibrate_threshold(run)
    after = setup.evaluate(network, run.val_cases)
    worse = bool(after < result.val_dice_before)  # False when either is NaN (no validation)
    version = config.version
    if worse and version is None and not config.accept_worse:
        version = below_parent_version(manifest.version)  # the parent stays the default
    info = {"dataset": training.dataset_name, "data_sha256": training.sha256, "cases": len(training.cases),
            "train_cases": [c.name for c in run.train_cases], "val_cases": len(run.val_cases),
            "validation": run.validation, "epochs": result.epochs, "best_epoch": trainer.best_epoch,
            "iterations_per_epoch": config.iterations_per_epoch, "val_dice_before": round(result.val_dice_before, 5),
            "val_dice_after": round(after, 5), "worse_than_parent": worse,
            "head": "kept" if setup.keep_head else "re-initialised", "world_size": run.dist.world,
            "config": {k: v for k, v in asdict(config).items() if k not in ("json_progress", "progress_bar")}}
    if threshold:
        info["class_thresholds"] = threshold
    if setup.plan_reasons:
        info["plan"] = setup.plan_reasons
    if "modality" in setup.manifest_updates:
        info["modality"] = setup.manifest_updates["modality"]
    state = _unsync_state(network.module.state_dict() if hasattr(network, "module") else network.state_dict())
    data_manifest = finetuned_manifest(manifest, training.class_names, training.class_values, setup.keep_head, info,
                                       version, config.model_id, grid=setup.grid)
    data_manifest.update(setup.manifest_updates)
    if run.flip_axis is None and setup.left_right_axis is not None:  # lateralised labels: no x mirror TTA either
        inference = data_manifest["inference"]
        data_manifest["inference"] = dict(inference, mirror_axes=[a for a in inference.get("mirror_axes", []) if a])
    if run.patch_kji and tuple(run.patch_kji) != tuple(setup.patch_kji):
        # Inference windows of the training patch: a model that learnt on 16-slice patches segments an
        # unseen half-scan better in 16-slice windows than in 80-slice ones (liver 0.56 -> 0.63), whose
        # deep features see a context (zero padding, distant anatomy) it never saw in training.
        from segmentai_core.geometry import kji_to_ijk

        data_manifest["inference"] = dict(data_manifest["inference"], patch_size=list(kji_to_ijk(run.patch_kji)))
    gate = _choose_gate(run, data_manifest)  # after the inference settings: it predicts as the engine will
    if gate:
        data_manifest["x-training"] = dict(data_manifest["x-training"], intensity_gate=gate)
        data_manifest["postprocessing"] = dict(data_manifest["postprocessing"], intensity_gate=gate["fences"])
    guard = _choose_parent_guard(run, data_manifest)
    if guard:
        data_manifest["x-training"] = dict(data_manifest["x-training"], parent_guard=guard)
        data_manifest["postprocessing"] = dict(data_manifest["postprocessing"], parent_guard={
            "model": manifest.full_id, "distance_mm": guard["distance_mm"]})
    package = setup.write_package(run.out / PACKAGE_DIR, data_manifest, state)
    result.package_dir, result.val_dice_after = package.folder, after
    result.worse_than_parent, result.model, result.parent = worse, package.full_id, manifest.full_id
    if config.json_progress:
        print(json.dumps({"event": "done", "package": str(package.folder), "model": package.full_id,
                          "val_dice_before": result.val_dice_before, "val_dice_after": after,
                          "worse_than_parent": worse, "parent": manifest.full_id, "epochs": result.epochs}),
              flush=True)
    return result


def parent_anchor_weight(config: FinetuneConfig, keep_head: bool) -> float:
    """The L2-SP weight of a run: the configured one, else 0.01 when the parent's own labels are
    trained (its head kept) and 0 otherwise; never from scratch (there is no parent to keep)."""
    if config.from_scratch:
        return 0.0
    if config.parent_anchor is not None:
        return max(0.0, float(config.parent_anchor))
    return 0.01 if keep_head else 0.0


def _left_right_flip(setup, config: FinetuneConfig) -> Optional[int]:
    """The array axis to flip left-right in augmentation, or None for lateralised new labels
    (:func:`.data_plan.lateralised_classes`); then the new package's mirror TTA leaves out x too."""
    from .data_plan import lateralised_classes

    if setup.left_right_axis is None:
        return 2
    if not config.plan_data or setup.keep_head:
        return setup.left_right_axis
    off = lateralised_classes([(c.image, c.label) for c in setup.training.cases], setup.num_classes,
                              setup.left_right_axis)
    if not off:
        setup.plan_reasons.append("left-right flip kept: every class is centred on the body's midline")
        return setup.left_right_axis
    names = ", ".join(setup.training.class_names[v - 1] for v in off)
    setup.plan_reasons.append(f"no left-right flip (augmentation or mirror TTA): {names} lies off the body's "
                              "midline (flipped, the other side's organ would be taken for it)")
    return None


def _calibrate_threshold(run: PreparedRun) -> Optional[Dict[str, Any]]:
    """New classes: each one's decision threshold chosen on the validation parts and baked into the
    network's output bias (:mod:`.calibration`); None when not done (the parent's labels, in-sample
    validation, no gain, or a head whose logits a bias cannot shift)."""
    from .calibration import calibrate

    setup, config = run.setup, run.config
    if not config.calibrate_threshold or setup.keep_head or setup.predict_logits is None \
            or run.validation == "in-sample" or not run.val_cases:
        return None
    probe = torch.zeros((1, 1) + tuple(run.patch_kji or setup.patch_kji), device=run.device)
    probe[:, :, ::2] = 0.5
    offsets, before, after, applied = calibrate(run.network, setup.predict_logits, run.val_cases,
                                                setup.num_classes, probe)
    if not applied:
        return None
    run.say(f"  decision thresholds chosen on the {run.validation} validation: "
            + ", ".join(f"class {c} p > {1 / (1 + math.exp(o)):.2f}" for c, o in enumerate(offsets) if c and o)
            + f" (validation Dice {before:.4f} -> {after:.4f})")
    return {"logit_offsets": [round(o, 4) for o in offsets],
            "thresholds": [round(1 / (1 + math.exp(o)), 3) for o in offsets[1:]],
            "val_dice_at_0.5": round(before, 5), "val_dice": round(after, 5)}


def _engine_predictor(run: PreparedRun, data_manifest: Dict[str, Any]):
    """The class map of one canonical image as ``segmentai segment`` will compute it with the new
    package (its windows, overlap and blending; no TTA, the CLI's default). The per-epoch validation
    is one whole-volume pass, which scored a liver slab 0.823 where the engine's 16-slice windows gave
    0.774: a postprocessing choice is made on what the user will get."""
    import numpy as np
    from segmentai_core.inference.engine import window_plan
    from segmentai_core.inference.memory import default_budget_bytes
    from segmentai_core.inference.windows import predict_probabilities
    from segmentai_core.models.manifest import ModelManifest

    # The weights are not written yet: a stand-in entry lets the manifest be read for its inference settings.
    stand_in = {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64}
    manifest = ModelManifest.from_dict(dict(data_manifest, weights=data_manifest.get("weights") or stand_in))
    plan = window_plan(manifest, int(default_budget_bytes() * 0.8))
    network = run.network.module if hasattr(run.network, "module") else run.network
    network.eval()
    return lambda image: predict_probabilities(network, np.ascontiguousarray(image, np.float32), plan,
                                               run.device).argmax(0).astype(np.uint8)


def _choose_parent_guard(run: PreparedRun, data_manifest: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The parent's own labels trained: the reach of the parent guard, measured on the corrected cases
    (:mod:`.parent_guard_choice`); None when it does not apply or is switched off."""
    from segmentai_core.models.architectures import NNUNET
    from segmentai_core.models.registry import ModelRegistry

    from .parent_guard_choice import measure_parent_guard
    from .transfer import build_finetune_network

    setup = run.setup
    if not (run.config.parent_guard and setup.keep_head and setup.predict_logits is not None):
        return None
    if run.manifest.architecture_row.pipeline == NNUNET:  # the engine guards its own pipeline only
        return None
    try:  # the engine finds the parent the same way: installed, by id@version
        parent = ModelRegistry().installed(run.manifest.full_id)
    except SegmentAIError as error:
        run.say(f"  no parent guard: {error}")
        return None

    def parent_network() -> torch.nn.Module:
        return build_finetune_network(parent, 2, True, seed=run.config.seed)[0].to(run.device)

    # Whole corrected cases, not the held-aside split's parts: on a slab cut through the brainstem the
    # parent itself is lost (held-aside Dice 0.27), and the corrections there reached 63 mm beyond it.
    return measure_parent_guard(parent.manifest, data_manifest, parent_network, setup.predict_logits,
                                list(setup.training.cases), run.say)


def _choose_gate(run: PreparedRun, data_manifest: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """New CT classes: the voxel-wise HU gate of each, kept where it raised the Dice of the engine's
    own prediction on the validation parts (:mod:`.gate_choice`); None when not tried or not kept."""
    from .gate_choice import choose_intensity_gate

    setup = run.setup
    post = data_manifest.get("postprocessing") or {}
    fences = {int(k): (float(v[0]), float(v[1])) for k, v in (post.get("intensity_range") or {}).items()}
    if setup.keep_head or setup.predict_logits is None or run.validation == "in-sample" or not fences:
        return None
    values = [int(v) for v in setup.training.class_values]
    normalization = data_manifest["preprocessing"].get("normalization", {})
    gate, before, after = choose_intensity_gate(_engine_predictor(run, data_manifest), run.val_cases,
                                                setup.num_classes, fences, values, normalization, post)
    if not gate:
        return None
    run.say(f"  HU gate kept on the {run.validation} validation: "
            + ", ".join(f"label {v} [{lo:.0f}, {hi:.0f}] HU" for v, (lo, hi) in gate.items())
            + f" (postprocessed validation Dice {before:.4f} -> {after:.4f})")
    return {"fences": {str(v): [lo, hi] for v, (lo, hi) in gate.items()},
            "val_dice_without": round(before, 5), "val_dice_with": round(after, 5)}


def _split(cases, config: FinetuneConfig):
    """Training and validation cases and how validation is done.

    Three or more cases (or ``--folds``): whole cases are held out. One or two: a held-aside part
    of each case validates (:mod:`.holdout`), unless ``holdout_fraction`` or ``val_fraction`` is 0
    or a structure is too small to cut; then validation is in-sample and says so.
    """
    from .data import split_cases
    from .holdout import hold_aside

    if len(cases) < 3 and not (config.folds and config.folds > 1) and config.val_fraction > 0 \
            and config.holdout_fraction > 0:
        parts = hold_aside(cases, config.holdout_fraction)
        if parts is not None:
            return parts[0], parts[1], "held-aside"
    return split_cases(cases, config.val_fraction, config.folds, config.fold, config.seed)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _said_after(delay_s: float, say, text: str):
    """Say ``text`` if the block is still running after ``delay_s`` seconds."""
    timer = threading.Timer(delay_s, say, args=(text,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _unsync_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """SyncBatchNorm and BatchNorm share parameter names: the state dict loads into the plain network."""
    return {k: v.detach().cpu() for k, v in state.items()}


class _to_device:
    """Iterator adapter moving sampler batches to the network's device."""

    def __init__(self, batches, device: torch.device) -> None:
        self.batches, self.device = batches, device

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in next(self.batches).items()}
