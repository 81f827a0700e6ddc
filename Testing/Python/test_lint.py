"""Lint gate: the whole repository passes ruff with the project's rules (pycodestyle errors, pyflakes)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_repository_is_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: it is part of the test extra (pip install -e .[test])")
    command = [ruff, "check", "--no-cache", "--output-format", "concise", "SegmentAI", "training", "bench", "Testing"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
