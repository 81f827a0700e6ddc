"""The set-up scripts' install plan (SEGMENTAI_DRY_RUN=1): what the demo and the tests install, which torch."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="bash scripts")


def _plan(script: str, tmp_path: Path, gpu=None, **env) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"  # stands in for the driver: answers (a GPU) or fails (none)
    fake.write_text("#!/bin/sh\necho 'GPU 0: Fake'\nexit 0\n" if gpu else "#!/bin/sh\nexit 9\n")
    fake.chmod(0o755)
    settings = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SEGMENTAI_DRY_RUN": "1",
                "SEGMENTAI_VENV": str(tmp_path / "venv"), **env}
    settings.pop("SEGMENTAI_EXTRAS", None)
    settings.pop("SEGMENTAI_TORCH", None)
    settings.update(env)
    return subprocess.run(["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True, env=settings,
                          timeout=120)


def test_demo_installs_the_runtime_only_and_the_tests_add_the_test_extra(tmp_path):
    demo = _plan("demo.sh", tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "runtime only" in demo.stdout and "[test]" not in demo.stdout and "nothing installed" in demo.stdout
    assert not (tmp_path / "venv").exists()  # a dry run creates nothing
    tests = _plan("test.sh", tmp_path, SEGMENTAI_SKIP_BROWSER="1")
    assert tests.returncode == 0, tests.stderr
    assert "segmentai[test]" in tests.stdout and "playwright" in tests.stdout
    assert "SEGMENTAI_SKIP_BROWSER=1: no system packages installed" in tests.stdout


def test_torch_build_follows_the_gpu_and_the_override(tmp_path):
    cpu = _plan("demo.sh", tmp_path, gpu=False).stdout
    assert "CPU build from https://download.pytorch.org/whl/cpu" in cpu
    assert "if that index cannot be reached, torch==2.13.0 from the configured index" in cpu  # works here
    assert "CUDA build (an NVIDIA GPU" in _plan("demo.sh", tmp_path, gpu=True).stdout
    assert "CUDA build" in _plan("demo.sh", tmp_path, gpu=False, SEGMENTAI_TORCH="cuda").stdout
    forced = _plan("demo.sh", tmp_path, gpu=True, SEGMENTAI_TORCH="cpu", SEGMENTAI_TORCH_CPU_INDEX="file:///x").stdout
    assert "CPU build from file:///x" in forced
    bad = _plan("demo.sh", tmp_path, SEGMENTAI_TORCH="rocm")
    assert bad.returncode == 2 and "auto, cpu or cuda" in bad.stderr


def test_an_installed_torch_is_kept_and_an_up_to_date_venv_is_left_alone(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # this interpreter has torch
    python.chmod(0o755)
    digest = hashlib.sha256(b"".join((ROOT / p).read_bytes() for p in
                                     ("pyproject.toml", "training/pyproject.toml", "scripts/venv.sh"))).hexdigest()
    (venv / ".segmentai-installed").write_text(f"{digest[:16]} \n")
    demo = _plan("demo.sh", tmp_path).stdout
    assert "packages: up to date" in demo and "torch: keep" in demo
    tests = _plan("test.sh", tmp_path, SEGMENTAI_SKIP_BROWSER="1").stdout  # the runtime is there, not the extra
    assert "torch: keep" in tests and "segmentai[test]" in tests
    (venv / ".segmentai-installed").write_text(f"{digest[:16]} test\n")
    assert "packages: up to date (segmentai[test])" in _plan("demo.sh", tmp_path).stdout  # never removed
