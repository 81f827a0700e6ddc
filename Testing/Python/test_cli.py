"""The ``segmentai`` command: the demo path end to end, and every kind of bad input."""

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segmentai_core.cli.main import main
from segmentai_core.io import read_segmentation
from segmentai_core.metrics import dice


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_image(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), vector=False):
    image = sitk.GetImageFromArray(array, isVector=vector)
    image.SetSpacing((tuple(spacing) + (1.0,))[: image.GetDimension()])
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture()
def blob_file(tmp_path):
    from segmentai_core.phantoms import blob_phantom

    image, _ = blob_phantom(shape=(24, 28, 26))
    path = tmp_path / "blob.nrrd"
    sitk.WriteImage(image.to_sitk(), str(path))
    return path


def assert_clean_failure(code, err, output: Path, needle: str):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("segmentai: error:") and needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if ".tmp" in p.name]


def test_sample_segment_evaluate_end_to_end(tmp_path, capsys):
    code, _, _ = run_cli(capsys, "sample", "-o", tmp_path)
    assert code == 0
    image, reference = tmp_path / "sample_t1.nii.gz", tmp_path / "sample_brain_mask.nii.gz"
    output, overview = tmp_path / "brain.seg.nrrd", tmp_path / "overview.png"
    code, out, err = run_cli(capsys, "segment", image, "-o", output, "--overview", overview, "--timings")
    assert code == 0, err
    assert set(json.loads(out)["timings_s"]) >= {"read", "preprocess", "network", "restore", "postprocess", "write"}
    labelmap, labels = read_segmentation(output)
    assert [label.name for label in labels] == ["Brain"]
    assert labels[0].terminology is not None and labels[0].terminology.type.value == "12738006"
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(reference)))
    assert labelmap.array.shape == ref.shape
    assert dice(labelmap.array == 1, ref > 0) > 0.9
    assert overview.stat().st_size > 10_000
    code, out, _ = run_cli(capsys, "evaluate", output, reference, "--json")
    assert code == 0 and json.loads(out)["metrics"]["1"]["dice"] > 0.9
    import slicerio

    segmentation = slicerio.read_segmentation(str(output))
    assert segmentation["segments"][0]["name"] == "Brain"


def test_existing_output_is_never_overwritten_without_flag(tmp_path, capsys, blob_file, tiny_package):
    output = tmp_path / "out.nii.gz"
    output.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "segment", blob_file, "-o", output, "--model", tiny_package.folder)
    assert code == 2 and "--overwrite" in err
    assert output.read_bytes() == b"precious"
    code, _, err = run_cli(capsys, "segment", blob_file, "-o", output, "--model", tiny_package.folder, "--overwrite")
    assert code == 0, err
    assert sitk.ReadImage(str(output)).GetSize() == (26, 28, 24)


def test_nan_voxels_are_repaired_with_a_note(tmp_path, capsys, tiny_package):
    array = np.random.default_rng(0).normal(size=(16, 18, 20)).astype(np.float32)
    array[2, 3, 4] = np.nan
    path = write_image(tmp_path / "nan.nrrd", array)  # NRRD keeps NaN (NIfTI readers turn it into 0)
    code, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "o.nrrd", "--model", tiny_package.folder)
    assert code == 0
    assert "1 NaN/infinite voxels" in err


def truncated_nifti(tmp_path):
    path = write_image(tmp_path / "full.nii", np.ones((20, 20, 20), np.int16))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(path.read_bytes()[:-3000])
    return cut


def truncated_nifti_gz(tmp_path):
    path = write_image(tmp_path / "full.nii", np.ones((20, 20, 20), np.int16))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(path.read_bytes()[:-3000]))
    return cut


def truncated_nrrd(tmp_path):
    path = tmp_path / "full.nrrd"
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32))
    sitk.WriteImage(image, str(path), False)
    cut = tmp_path / "cut.nrrd"
    cut.write_bytes(path.read_bytes()[:-5000])
    return cut


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.nii.gz", "nope.nii.gz"),
    "not an image": (lambda d: (d / "notes.nii.gz").write_text("hello") and d / "notes.nii.gz", "notes.nii.gz"),
    "truncated nifti": (truncated_nifti, "cut.nii"),
    "truncated nifti.gz": (truncated_nifti_gz, "cut.nii.gz"),
    "truncated nrrd": (truncated_nrrd, "cut.nrrd"),
    "2d": (lambda d: write_image(d / "flat.nrrd", np.ones((30, 40), np.float32)), "2D"),
    "4d": (lambda d: write_image(d / "time.nii.gz", np.ones((3, 8, 9, 10), np.float32)), "4 dimensions"),
    "vector": (lambda d: write_image(d / "rgb.nrrd", np.ones((8, 9, 10, 3), np.uint8), vector=True), "component"),
    "constant": (lambda d: write_image(d / "flat.nii.gz", np.full((10, 12, 14), 5, np.int16)), "constant"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case, tiny_package):
    make, needle = BAD_INPUTS[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = make(inputs)
    output = tmp_path / "out" / "result.seg.nrrd"
    output.parent.mkdir()
    code, _, err = run_cli(capsys, "segment", path, "-o", output, "--model", tiny_package.folder)
    assert_clean_failure(code, err, output, needle)


def test_volume_beyond_memory_budget_is_refused(tmp_path, capsys, blob_file, tiny_package):
    output = tmp_path / "o.nii.gz"
    code, _, err = run_cli(capsys, "segment", blob_file, "-o", output, "--model", tiny_package.folder,
                           "--memory-budget", "0.0001")
    assert_clean_failure(code, err, output, "memory budget")


def copy_package(package, dest: Path) -> Path:
    shutil.copytree(package.folder, dest)
    return dest


def test_model_with_wrong_hash_is_refused(tmp_path, capsys, blob_file, tiny_package):
    folder = copy_package(tiny_package, tmp_path / "tampered")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    output = tmp_path / "o.nii.gz"
    code, _, err = run_cli(capsys, "segment", blob_file, "-o", output, "--model", folder)
    assert_clean_failure(code, err, output, "hash mismatch")


def test_manifest_missing_fields_is_refused(tmp_path, capsys, blob_file, tiny_package):
    folder = copy_package(tiny_package, tmp_path / "incomplete")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["labels"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    output = tmp_path / "o.nii.gz"
    code, _, err = run_cli(capsys, "segment", blob_file, "-o", output, "--model", folder)
    assert_clean_failure(code, err, output, "labels")


class _Payload:
    """Unpickling this would run os.system: the loader must refuse before that can happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_carries_code_is_refused_and_never_runs(tmp_path, capsys, blob_file, tiny_package):
    import hashlib

    folder = copy_package(tiny_package, tmp_path / "evil")
    marker = tmp_path / "pwned"
    weights = folder / "model.pt"
    weights.write_bytes(pickle.dumps({"weight": _Payload(marker)}))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["weights"] = {"file": "model.pt", "format": "state_dict",
                           "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    output = tmp_path / "o.nii.gz"
    code, _, err = run_cli(capsys, "segment", blob_file, "-o", output, "--model", folder)
    assert code == 2 and "Traceback" not in err
    assert not marker.exists()
    assert not output.exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--debug", "segment", tmp_path / "missing.nii", "-o", tmp_path / "o.nii.gz")
    assert code == 2 and "Traceback" in err


def test_console_script_is_installed_and_reports_errors(tmp_path):
    exe = Path(sys.executable).with_name("segmentai")
    assert exe.exists(), "pip install -e . must install the segmentai command"
    done = subprocess.run([str(exe), "segment", str(tmp_path / "x.nii"), "-o", str(tmp_path / "y.nii.gz")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "x.nii" in done.stderr


def test_models_list_shows_the_bundled_default_model(capsys):
    code, out, _ = run_cli(capsys, "models", "list", "--json")
    assert code == 0
    ids = [entry["id"] for entry in json.loads(out)]
    assert "brain-t1-extraction" in ids


def test_interactive_model_is_refused_by_segment(tmp_path, capsys, blob_file):
    output = tmp_path / "o.nii.gz"
    code, _, err = run_cli(capsys, "segment", blob_file, "-o", output, "--model", "interactive-unet")
    assert_clean_failure(code, err, output, "segmentai refine")
