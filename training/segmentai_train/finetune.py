"""Fine-tuning a model package on a dataset of corrected cases: ``finetune(...)`` and its trainer.

Transfer learning keeps the source network's weights (re-initialising only the segmentation head
for a new label set), optionally freezes the encoder for the first epochs and gives it a lower
learning rate. Loss Dice + cross-entropy on foreground-oversampled, augmented patches; AdamW or
SGD with Nesterov momentum, warm-up then cosine or poly decay; AMP on CUDA; gradient
accumulation; DDP under ``torchrun``. Validation Dice each epoch, early stopping, a checkpoint
each epoch for ``resume``; the result is a NEW model package naming its parent. What depends on
the kind of source model (SegmentAI's own networks or an imported nnU-Net model) comes from
:mod:`.model_setup`.
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

from segmentai_core.errors import InputError, OutputError

from .distributed import DistContext, init_distributed, shutdown_distributed
from .sampling import recalibrate_batch_norm
from .shards import ShardedPatchSampler
from .trainer import TrainConfig, Trainer, cosine_lr, poly_lr

__all__ = ["worse_warning", "FinetuneConfig", "FinetuneResult", "FinetuneTrainer", "finetune"]

CHECKPOINT = "checkpoint_latest.pt"
PACKAGE_DIR = "model"
PREPARE_MESSAGE_DELAY_S = 2.0  # the "reading the cases" line, when preparation takes longer than this
STEP_LINE_INTERVAL_S = 30.0  # step lines when stderr is not a terminal (an epoch line comes at each epoch end)


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run (the CLI's options map one to one)."""

    epochs: int = 20
    iterations_per_epoch: int = 25
    batch_size: int = 2  # global batch of one micro-step, split over DDP processes
    accumulate: int = 1  # micro-steps per optimiser step
    learning_rate: float = 1e-3
    encoder_lr_scale: float = 0.3
    freeze_encoder_epochs: int = 0
    optimizer: str = "adamw"  # or "sgd" (Nesterov, momentum 0.99)
    weight_decay: float = 1e-4
    warmup_iterations: int = 20
    schedule: str = "cosine"  # or "poly"
    grad_clip: float = 12.0
    val_fraction: float = 0.2
    folds: int = 0
    fold: int = 0
    patience: int = 10  # epochs without validation gain before stopping; 0 = never
    foreground_fraction: float = 0.67
    class_weights: Optional[List[float]] = None
    patch_size: Optional[List[int]] = None  # training patch (x, y, z); default: the manifest's inference patch
    bn_mode: str = "train"  # "train": batch statistics, recalibrated for eval; "frozen": the parent's statistics
    bn_batches: int = 8
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    json_progress: bool = False
    progress_bar: bool = True
    time_limit_s: Optional[float] = None
    version: Optional[str] = None
    model_id: Optional[str] = None
    source_fold: Optional[str] = None  # imported nnU-Net models: the fold to start from (default: the first)
    accept_worse: bool = False  # publish as the next version even when validation Dice fell


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


def _batch_norms(network: torch.nn.Module) -> List[torch.nn.Module]:
    return [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


class FinetuneTrainer(Trainer):
    """The hook-based :class:`Trainer` with parameter groups, AMP, accumulation, DDP and early stopping."""

    def __init__(self, network: torch.nn.Module, loss: torch.nn.Module, sampler: ShardedPatchSampler, out_dir: Path,
                 config: FinetuneConfig, groups: List[Dict], validate_fn, device: torch.device,
                 dist: DistContext) -> None:
        train_config = TrainConfig(epochs=config.epochs, iterations_per_epoch=config.iterations_per_epoch,
                                   learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                                   warmup_iterations=config.warmup_iterations, schedule=config.schedule,
                                   grad_clip=config.grad_clip, json_progress=config.json_progress,
                                   time_limit_s=config.time_limit_s, seed=config.seed)
        super().__init__(network, loss.to(device), sampler, out_dir, train_config, validate_fn, str(device))
        self.ft = config
        self.dist = dist
        self.sampler = sampler
        self.model = network
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=config.learning_rate, momentum=0.99, nesterov=True,
                                             weight_decay=config.weight_decay)
        elif config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
        else:
            raise InputError(f"unknown optimizer '{config.optimizer}' (choose adamw or sgd)")
        self.use_amp = bool(config.amp and device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.best = -1.0
        self.best_epoch = 0
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.wait = 0
        self.val_dice_before = float("nan")
        self._bar = None
        self._last_json = 0.0
        self._text = bool(dist.is_main and not config.json_progress)  # human-readable lines on stderr
        self._tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self._fit_t0 = time.monotonic()
        self._fit_step0 = 0
        self._last_line = 0.0

    # -- hooks --------------------------------------------------------------------------------

    def on_train_start(self) -> None:
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.ft.seed)
        self._fit_t0, self._fit_step0 = time.monotonic(), self.step  # the ETA counts this run's steps only
        self._last_line = self._fit_t0

    def timing_text(self) -> str:
        """``3 min 10 s elapsed, about 25 min left`` from this run's steps so far."""
        from segmentai_core.cli.progress_bar import format_duration

        elapsed = time.monotonic() - self._fit_t0
        done = self.step - self._fit_step0
        total = self.ft.epochs * self.ft.iterations_per_epoch - self._fit_step0
        text = f"{format_duration(elapsed)} elapsed"
        if 0 < done < total:
            text += f", about {format_duration(elapsed * (total - done) / done)} left"
        return text

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch
        self.network.train()
        if self.ft.bn_mode == "frozen":
            for module in _batch_norms(self.network):
                module.eval()  # keep the parent's statistics; affine weights still learn
        self.sampler.set_epoch(epoch)
        if self.ft.progress_bar and self._text and self._tty:  # a bar on a terminal; step lines otherwise
            from tqdm import tqdm

            self._bar = tqdm(total=self.ft.iterations_per_epoch, desc=f"epoch {epoch + 1}/{self.ft.epochs}",
                             file=sys.stderr, leave=False, dynamic_ncols=True)

    def learning_rate(self) -> float:
        total = self.ft.epochs * self.ft.iterations_per_epoch
        schedule = cosine_lr if self.ft.schedule == "cosine" else poly_lr
        return schedule(self.step, total, self.ft.learning_rate, self.ft.warmup_iterations)

    def train_step(self, batch: Dict[str, torch.Tensor]) -> float:
        base = self.learning_rate()
        frozen = self.epoch < self.ft.freeze_encoder_epochs
        for group in self.optimizer.param_groups:
            # Freezing is a zero rate: DDP keeps one fixed set of parameters, and AdamW's decay scales with it.
            group["lr"] = 0.0 if frozen and group.get("name") == "encoder" else base * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(self.ft.accumulate):
            if micro:
                batch = next(self.batches)
            image = batch["image"].to(self.device, non_blocking=True)
            label = batch["label"].to(self.device, non_blocking=True)
            sync = micro == self.ft.accumulate - 1 or not self.dist.enabled
            context = self.model.no_sync() if not sync else _null()
            with context:
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.use_amp):
                    loss = self.loss(self.model(image), label) / self.ft.accumulate
                self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.ft.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self._report_step(total)
        return total

    def _report_step(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}")
        elif self.ft.progress_bar and self._text and time.monotonic() - self._last_line >= STEP_LINE_INTERVAL_S:
            self._last_line = time.monotonic()
            within = self.step - self.epoch * self.ft.iterations_per_epoch
            print(f"epoch {self.epoch + 1}/{self.ft.epochs}, step {within}/{self.ft.iterations_per_epoch}: "
                  f"loss {loss:.4f} | {self.timing_text()}", file=sys.stderr, flush=True)
        if self.ft.json_progress and self.dist.is_main and time.time() - self._last_json > 1.0:
            self._last_json = time.time()
            fraction = self.step / max(1, self.ft.epochs * self.ft.iterations_per_epoch)
            print(json.dumps({"event": "step", "epoch": self.epoch + 1, "step": self.step, "loss": round(loss, 5),
                              "fraction": round(fraction, 4)}), flush=True)

    def validate(self) -> Dict[str, float]:
        result: List[Dict[str, float]] = [{}]
        if self.dist.is_main and self.validate_fn is not None:
            result[0] = self.validate_fn(self.network)
        if self.dist.enabled:  # one process validates; all take the same stopping decision
            torch.distributed.broadcast_object_list(result, src=0)
        return result[0]

    def on_epoch_end(self, epoch: int, logs: Dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        logs["loss"] = self.dist.mean(logs["loss"])
        score = logs.get("val_dice")
        if score is not None:
            if score > self.best + 1e-4:
                self.best, self.best_epoch, self.wait = score, epoch + 1, 0
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
            else:
                self.wait += 1
            if self.ft.patience and self.wait >= self.ft.patience:
                self.stop_requested = True
        self.history.append(logs)
        if self.dist.is_main:
            self._write_metrics()
            self._plot_curve()
            self.save_checkpoint(self.out_dir / CHECKPOINT, epoch)
            if self.ft.json_progress:
                print(json.dumps({"event": "epoch", "epochs": self.ft.epochs, **logs}), flush=True)
            else:  # one line per epoch whatever the bar setting: progress is never invisible
                dice = f", val Dice {score:.4f}" if score is not None else ""
                self._last_line = time.monotonic()
                print(f"epoch {epoch + 1}/{self.ft.epochs}: loss {logs['loss']:.4f}{dice} | {self.timing_text()}",
                      file=sys.stderr, flush=True)

    # -- persistence --------------------------------------------------------------------------

    def checkpoint_state(self, epoch: int) -> Dict:
        state = super().checkpoint_state(epoch)
        state.update(scaler=self.scaler.state_dict(), best=self.best, best_epoch=self.best_epoch, wait=self.wait,
                     best_state=self.best_state or {}, val_dice_before=self.val_dice_before,
                     stopped=self.stop_requested)
        return state

    def restore_state(self, state: Dict) -> None:
        super().restore_state(state)
        self.scaler.load_state_dict(state["scaler"])
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_state = state["best_state"] or None
        self.val_dice_before = state["val_dice_before"]
        self.stop_requested = bool(state.get("stopped", False))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _resolve_model(model: Union[str, Path, Any]):
    from segmentai_core.models.package import ModelPackage
    from segmentai_core.models.registry import ModelRegistry

    if isinstance(model, ModelPackage):
        return model
    return ModelRegistry().get(str(model))


def _check_numbers(config: FinetuneConfig) -> None:
    """NaN, infinite or out-of-range rates and fractions are refused before any work (one line)."""
    checks = [("--lr", config.learning_rate, 0.0, False), ("--encoder-lr-scale", config.encoder_lr_scale, 0.0, True),
              ("--val-fraction", config.val_fraction, 0.0, True)]
    if config.time_limit_s is not None:
        checks.append(("--minutes", config.time_limit_s, 0.0, False))
    for name, value, low, low_ok in checks:
        if not math.isfinite(value) or value < low or (value == low and not low_ok):
            raise InputError(f"{name} must be a {'non-negative' if low_ok else 'positive'} number, got {value}")
    if config.val_fraction >= 1:
        raise InputError(f"--val-fraction must be below 1, got {config.val_fraction}")
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
    that ``resume`` continues) unless ``overwrite``.
    """
    from segmentai_core.inference.device import select_device

    from .data import split_cases
    from .model_setup import prepare_finetune
    from .new_package import below_parent_version, finetuned_manifest
    from .transfer import parameter_groups

    config = copy.deepcopy(config) if config is not None else FinetuneConfig()
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise TypeError(f"unknown fine-tuning option '{key}'")
        setattr(config, key, value)
    if config.epochs < 1 or config.iterations_per_epoch < 1 or config.batch_size < 1 or config.accumulate < 1:
        raise InputError("epochs, iterations, batch size and accumulation must be at least 1")
    out = Path(out)
    package_dir = out / PACKAGE_DIR
    checkpoint = out / CHECKPOINT
    if package_dir.exists():
        raise OutputError(f"{package_dir} exists already: this run has finished; choose a new --out folder")
    if checkpoint.exists() and not resume and not overwrite:
        raise OutputError(f"{out} holds an interrupted run ({CHECKPOINT}); pass --resume or choose a new --out folder")
    _check_numbers(config)
    _check_run_folder(out, resume, overwrite)

    device = select_device(config.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    say = _say if dist.is_main and not config.json_progress else (lambda text: None)
    started = time.monotonic()
    try:
        source = _resolve_model(model)
        manifest = source.manifest
        # Said only if preparing takes a while: a quick refusal (labels, configuration) stays one line.
        with _said_after(PREPARE_MESSAGE_DELAY_S, say, f"fine-tuning {manifest.full_id} on {data}: reading the cases "
                         "and resampling them to the model's grid..."):
            setup = prepare_finetune(source, Path(data), config, device)
        training, network, num_classes, keep_head = setup.training, setup.network, setup.num_classes, setup.keep_head
        if dist.enabled and device.type == "cuda" and config.bn_mode == "train":
            network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
        network.to(device)
        train_cases, val_cases, validation = split_cases(training.cases, config.val_fraction, config.folds,
                                                          config.fold, config.seed)
        patch_kji = setup.patch_kji
        sampler = ShardedPatchSampler(train_cases, patch_kji, config.batch_size, dist.rank, dist.world,
                                      config.foreground_fraction, config.seed)
        calibration = ShardedPatchSampler(train_cases, patch_kji, config.batch_size, 0, 1,
                                          config.foreground_fraction, config.seed + 7919)
        recalibrate = config.bn_mode == "train" and bool(_batch_norms(network))

        def validate(net: torch.nn.Module) -> Dict[str, float]:
            if recalibrate:
                calibration.set_epoch(0)
                with torch.no_grad():
                    recalibrate_batch_norm(net, _to_device(calibration, device), config.bn_batches)
            return {"val_dice": setup.evaluate(net, val_cases)}

        groups = parameter_groups(network, setup.architecture, config.encoder_lr_scale)
        trainer = FinetuneTrainer(network, _loss(num_classes, config.class_weights), sampler, out, config, groups,
                                  validate, device, dist)
        say(f"{len(train_cases)} training case(s), {len(val_cases)} validation case(s) ({validation}); "
            f"measuring the parent's validation Dice...")
        if resume and checkpoint.exists():
            trainer.load_checkpoint(checkpoint)
        else:
            before = [setup.evaluate(network, val_cases)] if dist.is_main else [0.0]
            if dist.enabled:
                torch.distributed.broadcast_object_list(before, src=0)
            trainer.val_dice_before = before[0]
        from segmentai_core.cli.progress_bar import format_duration

        say(f"validation Dice before fine-tuning {trainer.val_dice_before:.4f}; training epochs "
            f"{trainer.start_epoch + 1}..{config.epochs} x {config.iterations_per_epoch} steps (batch "
            f"{config.batch_size}) on {device} (prepared in {format_duration(time.monotonic() - started)})")
        if dist.is_main and config.json_progress:
            print(json.dumps({"event": "start", "model": manifest.full_id, "cases": len(train_cases),
                              "val_cases": len(val_cases), "validation": validation, "head": "kept" if keep_head
                              else "re-initialised", "start_epoch": trainer.start_epoch, "epochs": config.epochs,
                              "world_size": dist.world, "val_dice_before": trainer.val_dice_before}), flush=True)
        if not trainer.stop_requested:
            trainer.fit()
        epochs_run = len(trainer.history)

        result = FinetuneResult(None, trainer.val_dice_before, float("nan"), epochs_run, trainer.history)
        if dist.is_main:
            if trainer.best_state is not None:
                network.load_state_dict(trainer.best_state)  # weights and the statistics they were validated with
            elif recalibrate:
                recalibrate_batch_norm(network, _to_device(calibration, device), config.bn_batches * 4)
            after = setup.evaluate(network, val_cases)
            worse = bool(after < result.val_dice_before)  # False when either is NaN (no validation)
            version = config.version
            if worse and version is None and not config.accept_worse:
                version = below_parent_version(manifest.version)  # the parent stays the default
            info = {"dataset": training.dataset_name, "data_sha256": training.sha256, "cases": len(training.cases),
                    "train_cases": [c.name for c in train_cases], "val_cases": len(val_cases),
                    "validation": validation, "epochs": epochs_run, "best_epoch": trainer.best_epoch,
                    "iterations_per_epoch": config.iterations_per_epoch,
                    "val_dice_before": round(result.val_dice_before, 5),
                    "val_dice_after": round(after, 5), "worse_than_parent": worse,
                    "head": "kept" if keep_head else "re-initialised",
                    "world_size": dist.world, "config": {k: v for k, v in asdict(config).items()
                                                         if k not in ("json_progress", "progress_bar")}}
            state = network.module.state_dict() if hasattr(network, "module") else network.state_dict()
            state = {k: v for k, v in _unsync_state(state).items()}
            data_manifest = finetuned_manifest(manifest, training.class_names, training.class_values, keep_head, info,
                                               version, config.model_id, grid=setup.grid)
            package = setup.write_package(package_dir, data_manifest, state)
            result.package_dir, result.val_dice_after = package.folder, after
            result.worse_than_parent, result.model, result.parent = worse, package.full_id, manifest.full_id
            if config.json_progress:
                print(json.dumps({"event": "done", "package": str(package.folder), "model": package.full_id,
                                  "val_dice_before": result.val_dice_before, "val_dice_after": after,
                                  "worse_than_parent": worse, "parent": manifest.full_id,
                                  "epochs": epochs_run}), flush=True)
        dist.barrier()
        return result
    finally:
        shutdown_distributed(dist)


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
