"""TotalSegmentator's own Python API and SegmentAI on the same weights and scans: the same label maps.

A tiny nnU-Net model trained by nnunetv2 (``nnunet_model``) is placed where TotalSegmentator 2.18
looks for the weights of ``total --fast`` and zipped as that release's archive, which SegmentAI
installs from the file as its catalog model ``total_fast`` (so the catalog's settings for it are
what is tested). Each tool then segments the same CT-like NIfTI in its own subprocess, and
every class TotalSegmentator finds must be found by SegmentAI under the same name with Dice
≥ 0.999. One scan is at the model's 3 mm and stored in RAS order (only nnU-Net runs in both); the
other is anisotropic, oblique and stored with permuted axes, so TotalSegmentator's reordering and
resampling run as well. Nothing is downloaded: the weights are present and usage statistics off.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2", reason="the tiny model is trained by nnunetv2 (a test dependency)")
pytest.importorskip("dynamic_network_architectures")

sys.path.insert(0, str(Path(__file__).parent))
import totalseg_release as tr  # noqa: E402

if tr.totalseg_site() is None:
    pytest.skip(f"TotalSegmentator is not installed: scripts/test.sh installs totalsegmentator=={tr.TS_VERSION} "
                "into .venv/totalseg-site", allow_module_level=True)


def _oblique_direction() -> tuple:
    """Stored axes permuted (i → −y, j → −z, k → +x) and turned 12° and −7°: every reordering runs."""
    a, b = np.radians(12.0), np.radians(-7.0)
    turn_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    turn_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    permuted = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)
    return tuple((turn_z @ turn_x @ permuted).ravel())


CASES = {
    "ras-3mm": {"shape_kji": (24, 26, 22), "spacing_xyz": (3.0, 3.0, 3.0)},
    "oblique-anisotropic": {"shape_kji": (30, 22, 36), "spacing_xyz": (2.2, 3.4, 1.7),
                            "direction": _oblique_direction()},
}


@pytest.fixture(scope="module")
def tools(nnunet_model, tmp_path_factory):
    """TotalSegmentator's home with the tiny weights, and a SegmentAI home with them installed from the zip."""
    root = tmp_path_factory.mktemp("totalseg")
    home, segmentai_home = root / "totalseg-home", root / "segmentai-home"
    tr.place_tiny_model(nnunet_model, home)
    archive = tr.release_zip(home, root / f"{tr.TS_TASK_FOLDER}.zip")
    env = tr.tool_env(home, segmentai_home)
    done = subprocess.run([sys.executable, "-m", "segmentai_core.cli.main", "models", "install", "total_fast",
                           "--from-file", str(archive)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return root, env, segmentai_home


def test_installed_model_runs_as_totalsegmentator_runs_it(tools):
    """What TotalSegmentator 2.18 does for total --fast: tiles at step 0.8, no mirroring (NoMirroring
    trainer), resampling to 3 mm first."""
    _, _, segmentai_home = tools
    manifest = json.loads(next((segmentai_home / "models").glob("total_fast-*/manifest.json")).read_text())
    block = manifest["x-nnunet"]
    assert block["step_size"] == 0.8 and block["mirror_axes"] == [] and block["resample_mm"] == 3.0
    assert block["trainer"] == tr.TS_TRAINER
    assert {v["name"] for v in manifest["labels"].values()} == set(tr.CLASS_NAMES.values())


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_label_maps_as_totalsegmentator(tools, case):
    import SimpleITK as sitk

    root, env, _ = tools
    image = tr.write_ct(root / f"{case}.nii.gz", **CASES[case])
    theirs_dir, ours_path = root / f"{case}-totalseg", root / f"{case}.seg.nrrd"
    tr.run_tool("totalseg", image, theirs_dir, env, timeout_s=180)
    tr.run_tool("segmentai", image, ours_path, env, timeout_s=180)

    # TotalSegmentator writes one file per class of the task (117), on the input's grid.
    reference = sitk.ReadImage(str(image))
    written = sorted(theirs_dir.glob("*.nii.gz"))
    assert len(written) == 117
    first = sitk.ReadImage(str(written[0]))
    assert first.GetSize() == reference.GetSize()
    assert np.allclose(first.GetDirection(), reference.GetDirection(), atol=1e-5)
    theirs, ours = tr.read_labels(theirs_dir), tr.read_labels(ours_path)
    assert set(theirs) == set(tr.CLASS_NAMES.values()), "the tiny model should find both of its classes"
    assert set(ours) == set(theirs)
    for name, mask in theirs.items():
        assert mask.sum() > 100, f"{name}: too small to compare"
        assert ours[name].shape == mask.shape
        assert tr.dice(ours[name], mask) >= 0.999, f"{case}: {name}"
