"""Issue 17's adversarial probes that need a second process or a signal: concurrent ``dataset add``
(under the dataset lock), Ctrl-C while outputs are written, ``finetune --overwrite``/``--resume``,
and where NaN voxels of a NIfTI land. The data-driven probe table is ``test_adversarial.py``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from adversarial_inputs import (  # noqa: F401 - isolated_home: an autouse fixture
    _image_array, isolated_home, make_dataset, snapshot, write_mask, write_nifti_raw, write_nrrd)
from conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --- probes with a second process or a signal ---------------------------------------------------

def _env() -> dict:
    paths = [str(ROOT / "SegmentAI"), str(ROOT / "training"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}


# Both adders start together (a barrier of files), and each holds the window between "no
# dataset.json yet" and creating it open for 2 s: without a lock both see a new dataset.
_ADDER = textwrap.dedent("""
    import glob, os, sys, time
    import segmentai_core.dataset.cases as cases
    import segmentai_core.io  # noqa: F401 - SimpleITK imported before the barrier
    from segmentai_core.cli.main import main
    real = cases.remap_labels
    def slow(*args, **kwargs):
        result = real(*args, **kwargs)
        time.sleep(2.0)
        return result
    cases.remap_labels = slow
    ready, count = sys.argv[1], 2  # a barrier: every adder has imported everything before any starts
    open(f"{ready}.{os.getpid()}", "w").close()
    deadline = time.time() + 120
    while len(glob.glob(ready + ".*")) < count and time.time() < deadline:
        time.sleep(0.01)
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("names, refused", [(("Brain", "Brain"), 0), (("Brain", "Tumor"), 1)],
                         ids=["same-labels-both-land", "different-labels-one-refused"])
def test_concurrent_dataset_add(tmp_path, names, refused):
    from segmentai_core.dataset import list_cases, load_dataset, validate_dataset

    dataset = tmp_path / "ds"
    start = str(tmp_path / "ready")
    processes = []
    for index, name in enumerate(names):  # two different scans (the same one twice is a duplicate)
        image = write_nrrd(tmp_path / f"image{index}.nrrd", _image_array(seed=index))
        mask = write_mask(tmp_path / f"mask{index}.nrrd", image)
        processes.append(subprocess.Popen(
            [sys.executable, "-c", _ADDER, start, "dataset", "add", str(image), str(mask), "--dataset",
             str(dataset), "--labels", f"1={name}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()))
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in processes]
    failed = [r for r in results if r[0] != 0]
    assert len(failed) == refused, results
    for code, _, err in failed:
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert re.search(r"segment '(Brain|Tumor)' \(value 1\) is not a label of dataset ds", err), err
    info = load_dataset(dataset)
    cases = list_cases(dataset)
    assert [c.case_id for c in cases] == [f"case_{i + 1:04d}" for i in range(len(names) - refused)]
    for case in cases:  # every case's provenance agrees with dataset.json
        assert case.provenance["labels"] == {n: v for n, v in info.labels.items() if v > 0}
    assert validate_dataset(dataset) == []
    assert sorted(p.name for p in dataset.iterdir()) == ["dataset.json", "imagesTr", "labelsTr", "provenance"]


# Ctrl-C lands while the overview PNG is being written, after the label map was complete.
_INTERRUPTED = textwrap.dedent("""
    import os, signal, sys, time
    import segmentai_core.overview as overview
    from segmentai_core.cli.main import main
    # A terminal's Ctrl-C, even when the suite itself runs in the background (where the shell
    # starts every child with SIGINT ignored and Python would not raise KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    real = overview.write_overview
    def interrupted(*args, **kwargs):
        path = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        return path
    overview.write_overview = interrupted
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("suffix", [".seg.nrrd", ".nii.gz"])
def test_ctrl_c_while_the_overview_is_written(tmp_path, tiny_package, suffix):
    image = write_nrrd(tmp_path / "image.nrrd")
    work = tmp_path / "out"
    work.mkdir()
    before = snapshot(work)
    command = [sys.executable, "-c", _INTERRUPTED, "segment", str(image), "-o", str(work / f"seg{suffix}"),
               "--overview", str(work / "overview.png"), "--model", str(tiny_package.folder), "--device", "cpu",
               "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=180)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "segmentai: interrupted; nothing was written.", result.stderr
    assert snapshot(work) == before  # neither output, and no temporary left


def test_ctrl_c_after_the_outputs_says_what_was_written(tmp_path, monkeypatch, capfd, tiny_package):
    """Ctrl-C during the final renames is held back; the message names both outputs, which exist."""
    import signal

    import segmentai_core.io.staging as staging
    from segmentai_core.cli.main import main

    real = os.replace

    def replace_then_interrupt(src, dst):
        real(src, dst)
        if Path(dst) == tmp_path / "seg.nii.gz":  # the first of the final renames
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(staging.os, "replace", replace_then_interrupt)
    image = write_nrrd(tmp_path / "image.nrrd")
    code = main(["segment", str(image), "-o", str(tmp_path / "seg.nii.gz"), "--overview", str(tmp_path / "o.png"),
                 "--model", str(tiny_package.folder), "--device", "cpu", "--quiet"])
    err = capfd.readouterr().err
    assert code == 130 and "Traceback" not in err, err
    assert re.search(r"interrupted after the outputs were complete; written: .*seg\.nii\.gz, .*o\.png", err), err
    assert (tmp_path / "seg.nii.gz").is_file() and (tmp_path / "o.png").is_file()


def test_finetune_overwrite_and_resume_still_work(tmp_path, capfd, tiny_package):
    """--overwrite lets a run replace its own files; --resume of an interrupted run needs no --overwrite."""
    sys.path.insert(0, str(ROOT / "training"))
    from segmentai_train.cli import main

    data = make_dataset(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("stale")
    argv = ["finetune", "--model", str(tiny_package.folder), "--data", str(data), "--out", str(out), "--epochs", "1",
            "--iterations", "1", "--warmup", "1", "--device", "cpu", "--no-progress-bar", "--threads", "1"]
    assert main(argv) == 2
    assert (out / "metrics.csv").read_text() == "stale"
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "metrics.csv").read_text() != "stale" and (out / "model" / "manifest.json").is_file()
    # An interrupted run (checkpoint, metrics, curve, no model yet) resumes without --overwrite.
    import shutil

    shutil.rmtree(out / "model")
    capfd.readouterr()
    assert main(argv + ["--resume", "--epochs", "2"]) == 0, capfd.readouterr().err
    assert (out / "model" / "manifest.json").is_file()


def test_nifti_nan_lands_on_the_right_voxels(tmp_path):
    from segmentai_core.io import read_volume

    array = _image_array()
    array[3, 5, 7] = np.nan
    array[0, :, 2] = np.nan
    volume = read_volume(write_nifti_raw(tmp_path / "x.nii.gz", array))
    assert np.array_equal(np.isnan(volume.array), np.isnan(array))
    assert np.array_equal(volume.array[~np.isnan(array)], array[~np.isnan(array)])
