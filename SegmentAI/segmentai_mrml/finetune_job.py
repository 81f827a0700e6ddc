"""A fine-tuning run as a child process: JSON progress lines drained by a timer, Cancel kills it.

The run is ``segmentai-train finetune ... --json-progress`` (``segmentai_train``, the training
package): the application (Slicer or the web server) stays responsive, a crash cannot take it
down, and Cancel ends the whole process group. Shared by the desktop module (polled by a QTimer)
and the web app (polled by an asyncio task); when a run succeeds the caller imports the new
package into the model registry so it is selectable at once.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["FinetuneJob", "training_available"]


def training_available() -> bool:
    """True when the training package (``segmentai_train``) is installed."""
    import importlib.util

    return importlib.util.find_spec("segmentai_train") is not None


class FinetuneJob:
    """One fine-tuning run; :meth:`poll` (main thread) returns the events that arrived since the last call."""

    def __init__(self, model_id: str, dataset_dir: Path, out_dir: Path, epochs: int = 5, iterations: int = 10,
                 device: str = "auto", extra: Optional[List[str]] = None) -> None:
        self.out_dir = Path(out_dir)
        self.command = [sys.executable, "-m", "segmentai_train.cli", "finetune", "--model", model_id,
                        "--data", str(dataset_dir), "--out", str(out_dir), "--epochs", str(int(epochs)),
                        "--iterations", str(int(iterations)), "--device", device, "--json-progress",
                        "--no-progress-bar", *(extra or [])]
        self.state = "running"  # then succeeded / failed / cancelled
        self.error = ""
        self.fraction = 0.0
        self.history: List[Dict[str, float]] = []
        self.package_dir: Optional[Path] = None
        self.model_id = ""  # of the new package, once done
        self.val_dice_before: Optional[float] = None  # validation Dice of the starting model
        self.val_dice_after: Optional[float] = None  # and of the fine-tuned one
        self.validation = ""  # where validation Dice is measured: held-out, held-aside or in-sample
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr: List[str] = []
        self._cancelled = False
        self.started = time.time()
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)  # own process group: Cancel ends its children too
        threading.Thread(target=self._drain, args=(self.process.stdout, True), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.process.stderr, False), daemon=True).start()

    def _drain(self, stream, is_stdout: bool) -> None:
        for line in stream:
            if is_stdout:
                self._lines.put(line)
            else:
                self._stderr = (self._stderr + [line.rstrip()])[-20:]
        if is_stdout:
            self._lines.put(None)

    @classmethod
    def start(cls, model_id: str, dataset_dir: Path, runs_dir: Optional[Path] = None, **options) -> "FinetuneJob":
        """Start a run in a new time-stamped folder of ``runs_dir`` (default: ``segmentai-runs`` by the dataset)."""
        runs = Path(runs_dir) if runs_dir is not None else Path(dataset_dir).parent / "segmentai-runs"
        out = runs / time.strftime("run-%Y%m%d-%H%M%S")
        out.parent.mkdir(parents=True, exist_ok=True)
        return cls(model_id, dataset_dir, out, **options)

    @property
    def done(self) -> bool:
        return self.state != "running"

    def poll(self) -> List[dict]:
        """Parse the progress lines that arrived; update ``fraction``, ``history`` and the final state."""
        events: List[dict] = []
        finished = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                finished = True
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            events.append(event)
            kind = event.get("event")
            if kind == "step":
                self.fraction = float(event.get("fraction", self.fraction))
            elif kind == "epoch":
                self.history.append({k: v for k, v in event.items() if isinstance(v, (int, float))})
                self.fraction = max(self.fraction, len(self.history) / max(1, int(event.get("epochs", 1))))
            elif kind == "start":
                self.val_dice_before = _number(event.get("val_dice_before"))
                self.validation = str(event.get("validation") or "")
            elif kind == "done":
                self.package_dir, self.model_id = Path(event["package"]), str(event.get("model", ""))
                self.val_dice_before = _number(event.get("val_dice_before", self.val_dice_before))
                self.val_dice_after = _number(event.get("val_dice_after"))
        if finished and self.state == "running":
            code = self.process.wait()
            if self._cancelled:
                self.state, self.error = "cancelled", "Fine-tuning cancelled; no model was added."
            elif code == 0 and self.package_dir is not None:
                self.state, self.fraction = "succeeded", 1.0
            else:
                last = next((line for line in reversed(self._stderr) if line.strip()), f"exit status {code}")
                self.state, self.error = "failed", last.replace("segmentai-train: error: ", "")
        return events

    def cancel(self) -> None:
        """End the run and its children (their process group)."""
        self._cancelled = True
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    @property
    def curve_path(self) -> Path:
        """Where the trainer writes the training curve (after each epoch)."""
        return self.out_dir / "training_curve.png"

    def curve_png(self) -> Optional[bytes]:
        """The run's training curve, if there is one yet."""
        try:
            return self.curve_path.read_bytes()
        except OSError:
            return None

    def summary(self) -> str:
        """One line for the panel: the latest epoch while running, then the new model and its Dice before/after."""
        if self.state == "running":
            if not self.history:
                return "Fine-tuning: starting..."
            last = self.history[-1]
            dice = f", validation Dice {last['val_dice']:.3f}" if "val_dice" in last else ""
            return f"Fine-tuning: epoch {len(self.history)}, loss {last.get('loss', 0.0):.4f}{dice}"
        if self.state != "succeeded":
            return self.error
        before, after = self.val_dice_before, self.val_dice_after
        where = f"{self.validation} " if self.validation else ""
        dice = (f"; {where}validation Dice {before:.3f} -> {after:.3f}" if before is not None and after is not None
                else "")
        return f"Fine-tuned model {self.model_id or self.package_dir} added{dice}"


def _number(value) -> Optional[float]:
    """A finite float, or None (NaN when there was no validation split)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
