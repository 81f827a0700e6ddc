"""A fine-tuning run as a child process: JSON progress lines drained by a timer, Cancel kills it.

The run is ``segmentai-train finetune ... --json-progress`` (``segmentai_train``, the training
package): the server stays responsive, a crash cannot take the server down, and Cancel ends the
whole process group. When the run succeeds the new package is imported into the model registry
so it is selectable at once.
"""

from __future__ import annotations

import json
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
            elif kind == "done":
                self.package_dir = Path(event["package"])
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

    def curve_png(self) -> Optional[bytes]:
        """The run's training curve (written by the trainer each epoch), if there is one yet."""
        path = self.out_dir / "training_curve.png"
        try:
            return path.read_bytes()
        except OSError:
            return None
