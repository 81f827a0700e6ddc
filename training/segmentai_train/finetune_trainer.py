"""The fine-tuning trainer: :class:`Trainer` with parameter groups, AMP, accumulation, DDP, early
stopping on a smoothed validation Dice, and a budget-filling epoch plan (see :mod:`.finetune`)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

import torch

from segmentai_core.errors import InputError

from .distributed import DistContext
from .shards import ShardedPatchSampler
from .trainer import TrainConfig, Trainer, cosine_lr, poly_lr

if TYPE_CHECKING:
    from .finetune_config import FinetuneConfig

__all__ = ["FinetuneTrainer", "batch_norms", "CHECKPOINT", "SMOOTHING", "STEP_LINE_INTERVAL_S"]

CHECKPOINT = "checkpoint_latest.pt"  # the run folder's checkpoint, rewritten after each epoch
SMOOTHING = 0.6  # weight of the past in the smoothed validation Dice that picks the checkpoint
STEP_LINE_INTERVAL_S = 30.0  # step lines when stderr is not a terminal (an epoch line comes at each epoch end)


def batch_norms(network: torch.nn.Module) -> List[torch.nn.Module]:
    return [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


class FinetuneTrainer(Trainer):
    """The hook-based :class:`Trainer` with parameter groups, AMP, accumulation, DDP and early stopping."""

    def __init__(self, network: torch.nn.Module, loss: torch.nn.Module, sampler: ShardedPatchSampler, out_dir: Path,
                 config: "FinetuneConfig", groups: List[Dict], validate_fn, device: torch.device,
                 dist: DistContext, deadline: Optional[float] = None,
                 anchor: Optional[Dict[str, torch.Tensor]] = None, anchor_weight: float = 0.0) -> None:
        train_config = TrainConfig(epochs=config.epochs, iterations_per_epoch=config.iterations_per_epoch,
                                   learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                                   warmup_iterations=config.warmup_iterations, schedule=config.schedule,
                                   grad_clip=config.grad_clip, json_progress=config.json_progress,
                                   time_limit_s=config.time_limit_s, seed=config.seed)
        super().__init__(network, loss.to(device), sampler, out_dir, train_config, validate_fn, str(device))
        self.ft = config
        self.dist = dist
        # L2-SP: the parent's parameters (same names as the network's) and the weight of the pull.
        self.anchor = None if anchor is None else [
            (parameter, anchor[name].to(device)) for name, parameter in network.named_parameters() if name in anchor]
        self.anchor_weight = anchor_weight
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
        self.smoothed: Optional[float] = None  # smoothed validation Dice (chooses the checkpoint)
        self.wait = 0
        self.val_dice_before = float("nan")
        self._bar = None
        self._last_json = 0.0
        self._text = bool(dist.is_main and not config.json_progress)  # human-readable lines on stderr
        self._tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self._fit_t0 = time.monotonic()
        self._fit_step0 = 0
        self._last_line = 0.0
        self.deadline = deadline  # time.monotonic() by which a budget-filling run must have packaged its model
        self._epoch_t0 = 0.0
        self._epoch_seconds: List[float] = []

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

    def plan_epochs(self, epoch: int) -> None:
        """A budget-filling run: after each epoch, as many more epochs as the time left holds.

        The rule (said at the start): epochs take their mean duration so far, and one more epoch's
        time is kept for the final validation and the package. The learning-rate schedule follows
        the new total, so the run ends with its rate decayed, not cut off mid-schedule.
        """
        if self.deadline is None:
            return
        self._epoch_seconds.append(time.monotonic() - self._epoch_t0)
        mean = sum(self._epoch_seconds) / len(self._epoch_seconds)
        more = int((self.deadline - time.monotonic() - mean) // mean)
        total = [max(epoch + 1, min(self.ft.max_epochs, epoch + 1 + more))]
        if self.dist.enabled:  # every process runs the same number of epochs
            torch.distributed.broadcast_object_list(total, src=0)
        self.ft.epochs = self.config.epochs = total[0]

    def _may_stop_early(self) -> bool:
        """A budget-filling run stops early only when its validation has not gained for half of its
        planned epochs (and ``patience``, checked by the caller).

        Few-shot runs plateau and then improve again. With a 10-epoch patience in the budget's
        second half, a 10-minute liver run stopped at epoch 75 of 150 with the epoch-39 weights
        (unseen half Dice 0.69); run to the end, the same run chose epoch 82 (0.78), and a run that
        stopped at epoch 101 had also chosen epoch 82 (0.785). The time the user gave is used unless
        the validation has long stopped moving.
        """
        if self.deadline is None or not self._epoch_seconds:
            return True
        return self.wait >= self.ft.epochs / 2

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch_t0 = time.monotonic()
        self.epoch = epoch
        self.network.train()
        if self.ft.bn_mode == "frozen":
            for module in batch_norms(self.network):
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
                    if self.anchor is not None:
                        loss = loss + self._anchor_penalty() / self.ft.accumulate
                self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.ft.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self._report_step(total)
        return total

    def _anchor_penalty(self) -> torch.Tensor:
        """``anchor_weight`` x the summed squared distance of the parameters from the parent's."""
        return self.anchor_weight * sum(((p - a) ** 2).sum() for p, a in self.anchor)

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
        self.plan_epochs(epoch)
        score = logs.get("val_dice")
        if score is not None and math.isfinite(score):
            # The checkpoint is chosen on a smoothed score (nnU-Net's EMA of its pseudo-Dice): with one
            # small held-aside slab a single lucky early epoch would otherwise win.
            self.smoothed = score if self.smoothed is None else SMOOTHING * self.smoothed + (1 - SMOOTHING) * score
            logs["val_dice_smoothed"] = self.smoothed
            score = self.smoothed
        if score is not None:
            if score > self.best + 1e-4:
                self.best, self.best_epoch, self.wait = score, epoch + 1, 0
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
            else:
                self.wait += 1
            if self.ft.patience and self.wait >= self.ft.patience and self._may_stop_early():
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
                     smoothed=self.smoothed,
                     best_state=self.best_state or {}, val_dice_before=self.val_dice_before,
                     stopped=self.stop_requested)
        return state

    def restore_state(self, state: Dict) -> None:
        super().restore_state(state)
        self.scaler.load_state_dict(state["scaler"])
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.smoothed = state.get("smoothed")
        self.best_state = state["best_state"] or None
        self.val_dice_before = state["val_dice_before"]
        self.stop_requested = bool(state.get("stopped", False))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
