"""A readable training loop built from hook methods (after nnU-Net's trainer, much smaller).

A variant overrides one hook (``train_step``, ``validate``, ``on_epoch_end``...). The loop writes
``metrics.csv``, a training-curve PNG, one JSON progress line per epoch on stdout when asked
(for the Slicer module and the web app to follow), and a checkpoint each epoch for ``resume``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import torch

__all__ = ["TrainConfig", "Trainer", "poly_lr", "cosine_lr"]


@dataclass
class TrainConfig:
    epochs: int = 10
    iterations_per_epoch: int = 50
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_iterations: int = 50
    schedule: str = "cosine"  # or "poly"
    grad_clip: float = 12.0
    json_progress: bool = False
    time_limit_s: Optional[float] = None  # stop after the epoch in which this budget runs out
    seed: int = 0
    extra: Dict = field(default_factory=dict)


def poly_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (1 - (step - warmup) / max(1, total - warmup)) ** 0.9


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


class Trainer:
    """Trains ``network`` on batches from ``batches`` (dicts with ``image`` and ``label``)."""

    def __init__(
        self,
        network: torch.nn.Module,
        loss: torch.nn.Module,
        batches: Iterator[Dict[str, torch.Tensor]],
        out_dir: Path,
        config: TrainConfig,
        validate_fn: Optional[Callable[[torch.nn.Module], Dict[str, float]]] = None,
        device: str = "cpu",
    ) -> None:
        self.network = network.to(device)
        self.loss = loss
        self.batches = batches
        self.out_dir = Path(out_dir)
        self.config = config
        self.validate_fn = validate_fn
        self.device = device
        self.optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.history: List[Dict[str, float]] = []
        self.step = 0
        self.start_epoch = 0
        self.stop_requested = False
        self._t0 = time.time()

    # -- hooks --------------------------------------------------------------------------------

    def on_train_start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.config.seed)

    def on_epoch_start(self, epoch: int) -> None:
        self.network.train()

    def learning_rate(self) -> float:
        total = self.config.epochs * self.config.iterations_per_epoch
        schedule = cosine_lr if self.config.schedule == "cosine" else poly_lr
        return schedule(self.step, total, self.config.learning_rate, self.config.warmup_iterations)

    def train_step(self, batch: Dict[str, torch.Tensor]) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        image = batch["image"].to(self.device)
        label = batch["label"].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.network(image), label)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def validate(self) -> Dict[str, float]:
        if self.validate_fn is None:
            return {}
        self.network.eval()
        with torch.inference_mode():
            return self.validate_fn(self.network)

    def on_epoch_end(self, epoch: int, logs: Dict[str, float]) -> None:
        self.history.append(logs)
        self._write_metrics()
        self._plot_curve()
        self.save_checkpoint(self.out_dir / "checkpoint_latest.pt", epoch)
        if self.config.json_progress:
            print(json.dumps({"event": "epoch", **logs}), flush=True)

    def on_train_end(self) -> None:
        pass

    # -- loop ---------------------------------------------------------------------------------

    def fit(self) -> List[Dict[str, float]]:
        self.on_train_start()
        epoch = self.start_epoch
        while epoch < self.config.epochs:  # a hook may change the number of epochs (a budget-filling run)
            self.on_epoch_start(epoch)
            losses = [self.train_step(next(self.batches)) for _ in range(self.config.iterations_per_epoch)]
            logs = {"epoch": epoch + 1, "loss": sum(losses) / len(losses), "lr": self.learning_rate(),
                    "seconds": time.time() - self._t0}
            logs.update(self.validate())
            self.on_epoch_end(epoch, logs)
            if self.stop_requested:  # set by a hook, e.g. early stopping
                break
            if self.config.time_limit_s and time.time() - self._t0 > self.config.time_limit_s:
                break
            epoch += 1
        self.on_train_end()
        return self.history

    # -- persistence --------------------------------------------------------------------------
    # Every file of a run is written whole under a hidden name and renamed: a full disk or a kill
    # never leaves a 0-byte metrics.csv or a half checkpoint, and the error is one line.

    def checkpoint_state(self, epoch: int) -> Dict:
        """What a checkpoint holds; variants extend it (and :meth:`restore_state`)."""
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": epoch + 1, "step": self.step, "history": self.history}

    def restore_state(self, state: Dict) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])

    def save_checkpoint(self, path: Path, epoch: int) -> None:
        """Written atomically: an interrupted save never leaves a broken checkpoint behind."""
        _write_whole(path, lambda tmp: torch.save(self.checkpoint_state(epoch), tmp))

    def load_checkpoint(self, path: Path) -> None:
        self.restore_state(torch.load(path, map_location="cpu", weights_only=True))

    def _write_metrics(self) -> None:
        keys = sorted({k for row in self.history for k in row}, key=lambda k: (k != "epoch", k))

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.history)

        _write_whole(self.out_dir / "metrics.csv", write)

    def _plot_curve(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [row["epoch"] for row in self.history]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(epochs, [row["loss"] for row in self.history], label="training loss", color="tab:blue")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        dice_keys = [k for k in self.history[-1] if k.startswith("val_dice")]
        if dice_keys:
            ax2 = ax.twinx()
            for key in dice_keys:
                ax2.plot(epochs, [row.get(key, float("nan")) for row in self.history], label=key, linestyle="--")
            ax2.set_ylabel("validation Dice")
            ax2.set_ylim(0, 1)
            ax2.legend(loc="lower right", fontsize=8)
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        try:
            _write_whole(self.out_dir / "training_curve.png", lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
        finally:
            plt.close(fig)


def _write_whole(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a hidden temporary beside ``path``, then rename it; OSError (a full disk) → one OutputError."""
    from segmentai_core.errors import OutputError
    from segmentai_core.io.staging import temporary_path

    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        reason = getattr(error, "strerror", None) or (str(error).strip().splitlines() or ["write failed"])[0]
        raise OutputError(f"{path} cannot be written ({reason}); what the run wrote before "
                          "is kept (--resume continues from the last checkpoint)") from None
    finally:
        if tmp.exists():
            tmp.unlink()
