"""What the web tests share: their prerequisites and a ``segmentai web`` child process.

A web test module skips with a reason on a developer machine that lacks a prerequisite (chromium,
EGL, trame-slicer, Playwright); with ``CI=true`` a missing one is a collection error, never a silent
skip. The server is a real child process on a free port of 127.0.0.1, found ready by the line it
prints, and stopped with its whole process group.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SEGMENTAI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
_READY = re.compile(r"SegmentAI web ready: (http://127\.0\.0\.1:\d+/\S*)")


def missing(modules: Sequence[Tuple[str, str]], browser: bool) -> str:
    """Why the tests cannot run here ('' when they can): ``modules`` are (import name, pip name)."""
    for module, package in modules:
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[test]')"
    if browser and not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium, or scripts/system_deps.sh)"
    if ctypes.util.find_library("EGL") is None:
        return "no EGL library for offscreen rendering (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)"
    return ""


def skip_unless_ready(what: str, modules: Sequence[Tuple[str, str]], browser: bool):
    """The module's ``pytestmark``: skip with the reason, or raise under ``CI=true``."""
    reason = missing(modules, browser)
    if reason and os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"the {what} must run in CI: {reason}")
    return pytest.mark.skipif(bool(reason), reason=reason)


def server_env(tmp: Path, **extra: str) -> dict:
    """The child's environment: this one, its own user folder, offscreen VTK, the source tree."""
    env = dict(os.environ, SEGMENTAI_HOME=str(tmp / "home"), VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow",
               PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT / "SegmentAI"))
    env.update(extra)
    return env


class WebServer:
    """``segmentai web --port 0 --device cpu <args>`` in ``tmp``. ``printed`` is the address it printed
    when ready, ``url`` that address without its query, ``secret`` the secret the query carries."""

    def __init__(self, tmp: Path, args: Sequence[str], env: Mapping[str, str], timeout: float = 90) -> None:
        self.log = open(tmp / "server.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "segmentai_core.cli.main", "web", "--port", "0", "--device", "cpu", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=dict(env), cwd=tmp, start_new_session=True)
        self.printed = self._wait_ready(timeout)
        parts = urlsplit(self.printed)
        self.url = f"http://{parts.netloc}/"
        self.port = parts.port
        self.secret = parse_qs(parts.query).get("secret", [""])[0]

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            match = _READY.search(line)
            if match:
                return match.group(1)
        text = self.log_text()
        self.stop()
        raise RuntimeError(f"the server did not start; its log:\n{text[-3000:]}")

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 15 s; the log is closed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
