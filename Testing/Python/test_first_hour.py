"""What a new user meets in the first hour (issue 16): every command the README names does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segmentai_core.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _env():
    paths = [str(ROOT / "SegmentAI"), str(ROOT / "training"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.mark.parametrize("module", ["package_brain_extraction", "build_sample", "brain_extraction"])
def test_recipe_help_prints_usage_and_exits_0(module):
    """``python -m segmentai_train.recipes.package_brain_extraction --help`` crashed with an IndexError."""
    done = subprocess.run([sys.executable, "-m", f"segmentai_train.recipes.{module}", "--help"],
                          capture_output=True, text=True, env=_env(), timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "Traceback" not in done.stderr
    assert not (ROOT / "--help").exists()  # build_sample once took '--help' for its output folder


def test_package_recipe_without_arguments_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "segmentai_train.recipes.package_brain_extraction"],
                          capture_output=True, text=True, env=_env(), timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "usage:" in done.stderr and "Traceback" not in done.stderr


def test_evaluate_table_prints_pixel_accuracy(tmp_path, capsys):
    """The README says ``evaluate`` prints pixel accuracy; its table had no such column."""
    ref = np.zeros((10, 12, 14), np.uint8)
    ref[2:8, 3:9, 4:10] = 1
    pred = ref.copy()
    pred[2:8, 3:9, 4:6] = 0  # 72 voxels missed
    for name, array in (("pred", pred), ("ref", ref)):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / f"{name}.nii.gz"))
    code, out, _ = run_cli(capsys, "evaluate", tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz")
    assert code == 0
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(line for line in lines if line[0] == "Label")
    row = next(line for line in lines if line[0] == "1")
    column = header.index("PixAcc")
    expected = 1 - 72 / ref.size
    assert float(row[column]) == pytest.approx(expected, abs=1e-4)
