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


def test_recipe_leaves_out_only_its_own_training_heads(tmp_path):
    """``--leave-out`` names a training head (ROBEX, ICBM152 2009a); anything else, FSL's test head
    included, is a usage error before any data is fetched."""
    from segmentai_train.recipes import brain_extraction

    for name in ("fsl_mni152", "nope"):
        with pytest.raises(SystemExit) as stopped:
            brain_extraction.main(["--out", str(tmp_path), "--leave-out", name])
        assert stopped.value.code == 2
    assert not any(tmp_path.iterdir())


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


def _scripted_validation(monkeypatch, scores):
    """Validation Dice as scripted: first the parent's, then every later measurement (a run that ends worse)."""
    from segmentai_train import model_setup

    real = model_setup.prepare_finetune
    calls = iter(scores)

    def prepare(*args, **kwargs):
        setup = real(*args, **kwargs)
        last = [scores[-1]]

        def evaluate(network, cases):
            last[0] = next(calls, last[0])
            return last[0]

        setup.evaluate = evaluate
        return setup

    monkeypatch.setattr(model_setup, "prepare_finetune", prepare)


QUICK_CLI = ["--epochs", "1", "--iterations", "1", "--warmup", "1", "--device", "cpu", "--no-progress-bar",
             "--bn", "frozen", "--batch-size", "1"]


def _dataset(folder: Path) -> Path:
    from segmentai_core.dataset import add_case
    from segmentai_core.phantoms import blob_phantom

    for seed in range(3):
        image, mask = blob_phantom(shape=(40, 48, 44), seed=seed)
        add_case(folder, image, mask, {1: "Object"})
    return folder


def test_finetune_worse_than_parent_says_so_and_keeps_the_parent_default(tmp_path, monkeypatch, capsys):
    """Validation Dice 0.9696 -> 0.9657 was published as the next version without a word (issue 16, item 3)."""
    from conftest import make_tiny_package
    from segmentai_core.models.registry import ModelRegistry
    from segmentai_train.cli import main as train_main

    source = make_tiny_package(tmp_path / "tiny")
    data = _dataset(tmp_path / "data")
    _scripted_validation(monkeypatch, [0.9696, 0.9657])
    assert train_main(["finetune", "--model", str(source.folder), "--data", str(data), "--out", str(tmp_path / "run"),
                       *QUICK_CLI]) == 0
    out, err = capsys.readouterr()
    assert "WARNING: the fine-tuned model is WORSE than its parent" in err and "0.9696 -> 0.9657" in err
    assert "--accept-worse" in err and "tiny-test@0.0.1 stays the default" in err
    from segmentai_core.models.package import ModelPackage

    worse = ModelPackage.open(tmp_path / "run" / "model")
    assert worse.manifest.version == "0.0.1-worse" and worse.manifest.extensions["x-training"]["worse_than_parent"]
    assert worse.manifest.notes.startswith("WORSE THAN ITS PARENT")
    registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "user")
    registry.import_package(source.folder)
    registry.import_package(worse.folder)
    assert registry.get("tiny-test").version == "0.0.1"  # the parent stays what the id names
    assert registry.get("tiny-test@0.0.1-worse").version == "0.0.1-worse"  # the user can still choose it

    _scripted_validation(monkeypatch, [0.9696, 0.9657])  # the user's choice: publish it anyway
    assert train_main(["finetune", "--model", str(source.folder), "--data", str(data), "--out", str(tmp_path / "run2"),
                       "--accept-worse", *QUICK_CLI]) == 0
    _, err = capsys.readouterr()
    assert "WORSE" in err and "outranks" in err
    assert ModelPackage.open(tmp_path / "run2" / "model").manifest.version == "0.0.2"

    _scripted_validation(monkeypatch, [0.90, 0.95])  # better: quiet, the next version
    assert train_main(["finetune", "--model", str(source.folder), "--data", str(data), "--out", str(tmp_path / "run3"),
                       *QUICK_CLI]) == 0
    _, err = capsys.readouterr()
    assert "WORSE" not in err
    assert ModelPackage.open(tmp_path / "run3" / "model").manifest.version == "0.0.2"


def test_dataset_add_refuses_the_same_image_twice_and_validate_flags_duplicates(tmp_path, capsys):
    """The same image added twice was accepted and 'validate' said ok: validation could leak into training."""
    import shutil

    from segmentai_core.dataset.layout import image_path, label_path
    from segmentai_core.io import write_labelmap, write_volume
    from segmentai_core.phantoms import blob_phantom

    image, mask = blob_phantom(shape=(20, 24, 22), seed=0)
    write_volume(image, tmp_path / "img.nrrd")
    write_volume(image.with_array(image.array.astype(np.float32)), tmp_path / "same_as_float.nii.gz")
    write_labelmap(mask, tmp_path / "mask.nii.gz")
    folder = tmp_path / "ds"
    def add(image, *extra):
        return run_cli(capsys, "dataset", "add", image, tmp_path / "mask.nii.gz", "--dataset", folder, *extra,
                       "--labels", "1=Brain")

    assert add(tmp_path / "img.nrrd")[0] == 0
    # The same voxels in another format and storage type: refused in one line, nothing added.
    code, out, err = add(tmp_path / "same_as_float.nii.gz")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "already in dataset ds as case_0001" in err and "--allow-duplicate" in err
    assert not image_path(folder, "case_0002").exists()
    assert run_cli(capsys, "dataset", "validate", folder)[0] == 0
    # A copy made behind the tool's back (or with --allow-duplicate) is flagged by validate.
    shutil.copyfile(image_path(folder, "case_0001"), image_path(folder, "case_0002"))
    shutil.copyfile(label_path(folder, "case_0001"), label_path(folder, "case_0002"))
    assert add(tmp_path / "img.nrrd", "--allow-duplicate")[0] == 0
    code, _, err = run_cli(capsys, "dataset", "validate", folder)
    assert code == 2
    flagged = [line for line in err.splitlines() if "same image as case_0001" in line]
    assert len(flagged) == 2 and any("case_0002" in line for line in flagged)
    assert any("case_0003" in line for line in flagged)


def test_segment_prints_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys, tiny_package, monkeypatch):
    """``segment`` printed nothing until the end when its output went to a file or a pipe."""
    from segmentai_core.cli import progress_bar
    from segmentai_core.io import write_volume

    monkeypatch.setattr(progress_bar, "LINE_DELAY_S", 0.0)  # lines start after 2 s; this job is shorter
    from segmentai_core.phantoms import blob_phantom

    image, _ = blob_phantom(shape=(40, 48, 44), seed=1)
    write_volume(image, tmp_path / "img.nii.gz")
    code, _, err = run_cli(capsys, "segment", tmp_path / "img.nii.gz", "-o", tmp_path / "out.nii.gz",
                           "--model", tiny_package.folder)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("Segmenting img.nii.gz:")]
    assert len(lines) >= 3 and "\r" not in err
    assert "100%" in lines[-1] and all("elapsed" in line for line in lines)
    code, _, err = run_cli(capsys, "segment", tmp_path / "img.nii.gz", "-o", tmp_path / "out2.nii.gz",
                           "--model", tiny_package.folder, "--quiet")
    assert code == 0 and "Segmenting" not in err


def test_line_progress_is_bounded_and_estimates_the_time_left():
    import io

    from segmentai_core.cli.progress_bar import LineProgress, format_duration

    now = [0.0]
    stream = io.StringIO()
    progress = LineProgress("Job", stream=stream, interval_s=10.0, clock=lambda: now[0], delay_s=1.0)
    for step in range(1001):  # 1000 small updates, one stage with counters, 0.05 s apart
        now[0] = step * 0.05
        progress(step / 1000, f"Windows {step}/1000")
    lines = stream.getvalue().splitlines()
    assert 10 <= len(lines) <= 16  # a line per tenth (and per 10 s), not one per update
    halfway = next(line for line in lines if line.startswith("Job:  50%"))
    assert "25 s elapsed, about 25 s left" in halfway
    assert not lines[0].startswith("Job:   0%")  # nothing in the first second: a quick refusal stays one line
    assert format_duration(75) == "1 min 15 s" and format_duration(3725) == "1 h 2 min"


def test_finetune_help_shows_defaults_and_runs_say_what_they_do(tmp_path, capsys, monkeypatch):
    """``finetune --help`` showed no defaults; ``--no-progress-bar`` runs printed nothing until the end, and the
    ~20 s before the first epoch passed without a word."""
    from conftest import make_tiny_package
    from segmentai_train import finetune as finetune_module
    from segmentai_train.cli import build_parser, main as train_main

    monkeypatch.setattr(finetune_module, "PREPARE_MESSAGE_DELAY_S", 0.0)  # said after 2 s; these cases are quick
    text = build_parser()._subparsers._group_actions[0].choices["finetune"].format_help()
    assert "(default: 20)" in text and "(default: 25)" in text and "(default: adamw)" in text
    source = make_tiny_package(tmp_path / "tiny")
    data = _dataset(tmp_path / "data")
    args = [a if a != "1" or i != 1 else "2" for i, a in enumerate(QUICK_CLI)]  # --epochs 2
    assert train_main(["finetune", "--model", str(source.folder), "--data", str(data), "--out", str(tmp_path / "run"),
                       *args]) == 0
    err = capsys.readouterr().err.splitlines()
    first_epoch = next(i for i, line in enumerate(err) if line.startswith("epoch 1/2:"))
    before = err[:first_epoch]
    assert any("reading the cases" in line for line in before)
    assert any("validation Dice before fine-tuning" in line for line in before)
    assert "elapsed, about" in err[first_epoch] and "left" in err[first_epoch]
    assert any(line.startswith("epoch 2/2:") and "elapsed" in line for line in err)


def test_segmenting_a_mask_with_the_t1_model_warns(tmp_path, capsys, tiny_package):
    """A binary mask segmented as if it were a T1 gave 'Brain 1767.9 mL' without a word (issue 16, item 12)."""
    from segmentai_core.io import write_labelmap, write_volume
    from segmentai_core.phantoms import blob_phantom

    image, mask = blob_phantom(shape=(40, 48, 44), seed=2)
    write_labelmap(mask, tmp_path / "mask.nii.gz")
    write_volume(image, tmp_path / "image.nii.gz")
    code, _, err = run_cli(capsys, "segment", tmp_path / "mask.nii.gz", "-o", tmp_path / "out.nii.gz",
                           "--model", tiny_package.folder, "--quiet")
    assert code == 0 and (tmp_path / "out.nii.gz").exists()  # a warning, not a refusal
    warnings = [line for line in err.splitlines() if line.startswith("segmentai: warning:")]
    assert len(warnings) == 1 and "2 distinct values" in warnings[0] and "label map or mask" in warnings[0]
    code, _, err = run_cli(capsys, "segment", tmp_path / "image.nii.gz", "-o", tmp_path / "out2.nii.gz",
                           "--model", tiny_package.folder, "--quiet")
    assert code == 0 and "warning" not in err


def test_input_statistics_against_the_models_modality(default_package):
    """The bundled T1 sample passes; its mask and a CT in HU are flagged for the T1 model, an MR image for a
    CT model."""
    import copy

    from segmentai_core.inference.input_check import input_warnings
    from segmentai_core.io import read_volume
    from segmentai_core.resources import resources_dir

    t1_manifest = default_package.manifest
    sample = resources_dir() / "SampleData"
    t1 = np.asarray(read_volume(sample / "sample_t1.nii.gz").array)
    mask = np.asarray(read_volume(sample / "sample_brain_mask.nii.gz").array)
    assert input_warnings(t1, t1_manifest) == []
    assert "label map or mask" in input_warnings(mask, t1_manifest)[0] and "MR scan (T1)" in \
        input_warnings(mask, t1_manifest)[0]
    ct = np.full((48, 48, 48), -1000, np.int16)
    ct[8:40, 8:40, 8:40] = np.random.default_rng(0).integers(-100, 300, (32, 32, 32))
    assert "Hounsfield" in input_warnings(ct, t1_manifest)[0]
    assert input_warnings(np.zeros((8, 8, 8)), t1_manifest) == []  # constant: the engine refuses it in one line
    ct_manifest = copy.copy(t1_manifest)
    ct_manifest.modality = "CT"
    assert "not look like CT" in input_warnings(t1, ct_manifest)[0]
    assert input_warnings(ct, ct_manifest) == []


def test_cold_refine_reports_start_up_apart_and_never_imports_monai(tmp_path):
    """A cold ``refine`` took 4-6 s, mostly importing MONAI; the README's 0.10 s per click is a running session's
    figure. The command now names its start-up costs apart, and loading the bundled model imports no MONAI."""
    from segmentai_core.resources import resources_dir

    sample = resources_dir() / "SampleData" / "sample_t1.nii.gz"
    argv = ["refine", str(sample), "--fg", "58,75,77", "--ijk", "-o", str(tmp_path / "r.nii.gz")]
    code = (f"import sys; from segmentai_core.cli.main import main; rc = main({argv!r}); "
            "print(rc, 'monai' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"], done.stdout
    line = next(line for line in done.stderr.splitlines() if line.startswith("Wrote"))
    assert "start-up: torch import" in line and "model load" in line and "interaction" in line
    load_s = float(line.split("model load ")[1].split(" s")[0])
    assert load_s <= 2.0, line  # about 0.1-0.3 s on 2 busy cores; MONAI's import alone took 8 s there
