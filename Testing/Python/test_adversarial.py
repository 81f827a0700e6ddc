"""The record of issue 17's adversarial probes: every bad input gets one line, the right exit code, and
changes nothing but the output it was asked for.

Each :class:`Probe` is data: how to build its input, the command, the exit code, a pattern the
message must match, and the paths (globs, relative to the probe's folder) that may change; every
other file and link in that folder must be left exactly as it was. Probes that need two processes
(concurrent ``dataset add``) or a signal (Ctrl-C while the outputs are written) are in
``test_adversarial_processes.py``; the inputs both build are in ``adversarial_inputs.py``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from adversarial_inputs import (  # noqa: F401 - isolated_home: an autouse fixture
    _image_array, changed, fake_nnunet_folder, isolated_home, make_dataset, nrrd_with_grid, snapshot,
    unwritable_folder, write_mask, write_nifti_raw, write_nrrd)
from conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --- probe table --------------------------------------------------------------------------------

Setup = Callable[[Path, Dict[str, Path]], None]


@dataclass
class Probe:
    """One adversarial input: ``argv`` items are formatted with the paths ``setup`` put in ``p``."""

    id: str
    setup: Setup
    argv: Sequence[str]
    code: int
    pattern: str
    may_change: Tuple[str, ...] = ()  # globs relative to the probe folder
    must_change: Tuple[str, ...] = ()  # paths that must differ afterwards (written or removed)
    tool: str = "segmentai"
    lines: Optional[int] = 1  # lines on stderr for an error (None: not checked)
    fault: Optional[Callable[[pytest.MonkeyPatch], None]] = None  # e.g. a full disk


def _image(work, p):
    p["image"] = write_nrrd(work / "image.nrrd")


def _dangling_output(work, p):
    _image(work, p)
    p["out"] = work / "out.nii.gz"
    os.symlink(work / "gone" / "target.nii.gz", p["out"])


def _nan_nifti(fraction: float):
    def setup(work, p):
        array = _image_array()
        flat = array.reshape(-1)
        flat[: int(round(fraction * flat.size))] = np.nan
        p["image"] = write_nifti_raw(work / "image.nii.gz", array)
    return setup


def _grid(directions: str):
    def setup(work, p):
        p["image"] = nrrd_with_grid(work / "image.nrrd", directions)
    return setup


def _dicom_without_series(work, p):
    p["image"] = work / "dicom"
    p["image"].mkdir()
    (p["image"] / "x.dcm").write_bytes(np.random.default_rng(1).bytes(2000))


def _disk_full(monkeypatch):
    """Every image write fails as on a full disk (after the dataset folder could be created)."""
    import segmentai_core.io.volume_io as volume_io
    from segmentai_core.errors import OutputError

    def full(image, path, *args, **kwargs):
        raise OutputError(f"{path} cannot be written (No space left on device)")

    monkeypatch.setattr(volume_io, "write_image_atomic", full)


def _disk_full_for_metrics(monkeypatch):
    """The disk fills up while metrics.csv is written (the file had been opened: 0 bytes were left)."""
    import errno

    import segmentai_train.trainer as trainer

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer.csv.DictWriter, "writerows", full)


def _disk_full_for_copies(monkeypatch):
    """The disk fills up while a package is copied into the registry."""
    import errno

    import segmentai_core.models.registry as registry

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(registry.shutil, "copy2", full)


def _source_package(work, p):
    from conftest import make_tiny_package

    p["package"] = make_tiny_package(work / "package").folder


def _stale_temporary(work, p):
    _image(work, p)
    stale = work / ".out.tmp-0badcafe.nii.gz"
    stale.write_bytes(b"left by a killed write")
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    fresh = work / ".out.tmp-00c0ffee.nii.gz"  # another writer's, still at work: kept
    fresh.write_bytes(b"being written")


def _case(work, p):
    _image(work, p)
    p["mask"] = write_mask(work / "mask.nrrd", p["image"])


def _case_into_file(work, p):
    _case(work, p)
    p["ds"] = work / "dataset.txt"
    p["ds"].write_text("not a folder")


def _case_into_unwritable(work, p):
    _case(work, p)
    p["ds"] = unwritable_folder(work) / "segmentai-dataset"


def _case_images_file(work, p):
    _case(work, p)
    p["ds"] = work / "ds"
    p["ds"].mkdir()
    (p["ds"] / "imagesTr").write_text("a file where the folder belongs")


def _all_nan_case(work, p):
    _nan_nifti(1.0)(work, p)
    array = np.zeros((20, 22, 24), np.uint8)
    array[8:12, 8:12, 8:12] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(sitk.ReadImage(str(p["image"])))
    p["mask"] = work / "mask.nrrd"
    sitk.WriteImage(mask, str(p["mask"]))
    p["ds"] = work / "ds"


def _dataset_with_nan_image(work, p):
    p["ds"] = make_dataset(work / "ds", count=1)
    stored = p["ds"] / "imagesTr" / "case_0001_0000.nii.gz"
    image = sitk.ReadImage(str(stored))
    nan = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(image).shape, np.nan, np.float32))
    nan.CopyInformation(image)
    sitk.WriteImage(nan, str(stored))


def _finetune_inputs(work, p):
    p["data"] = make_dataset(work / "data")
    p["out"] = work / "run"


def _run_folder_with(*names: str):
    def setup(work, p):
        _finetune_inputs(work, p)
        p["out"].mkdir()
        for name in names:
            (p["out"] / name).write_text("from an earlier run")
    return setup


def _unwritable_run(work, p):
    _finetune_inputs(work, p)
    p["out"] = unwritable_folder(work) / "segmentai-run"


def _zip(work, p):
    p["zip"] = work / "model.zip"
    p["zip"].write_bytes(b"PK\x05\x06" + b"\0" * 18)


_PLANS = {"dataset_name": "Dataset001_Liver", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
          "configurations": {"3d_fullres": {"patch_size": [32, 32, 32], "spacing": [1, 1, 1]}}}


def _plain_conv_unet_plans(first_width: int) -> dict:
    """Plans of a 3-stage PlainConvUNet as nnU-Net v2 writes them, with ``first_width`` features at stage 0."""
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 3, "features_per_stage": [first_width, 16, 32],
                            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * 3,
                            "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2],
                            "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    return {**_PLANS, "image_reader_writer": "SimpleITKIO", "configurations": {"3d_fullres": {
        "patch_size": [32, 32, 32], "spacing": [1.0, 1.0, 1.0], "architecture": arch,
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False]}}}


def _nnunet(plans: dict, labels: Optional[dict] = None):
    def setup(work, p):
        p["model"] = fake_nnunet_folder(work / "nnunet", plans, labels)
    return setup


def _bundle_config(network: dict) -> dict:
    keys = ["image"]
    return {
        "network_def": network,
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": keys}, {"_target_": "EnsureChannelFirstd", "keys": keys},
            {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": keys, "pixdim": [1.5] * 3, "mode": "bilinear"},
            {"_target_": "NormalizeIntensityd", "keys": keys, "nonzero": False, "channel_wise": True}]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 1,
                    "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
    }


def _monai_bundle(network: Optional[dict] = None, yaml_text: Optional[str] = None):
    """A MONAI bundle; without ``yaml_text`` its weights are MONAI's own UNet built from MONAI's defaults."""
    def setup(work, p):
        import torch
        from monai.networks.nets import UNet

        folder = work / "bundle"
        (folder / "configs").mkdir(parents=True)
        (folder / "models").mkdir()
        (folder / "configs" / "metadata.json").write_text(json.dumps({"name": "probe", "version": "0.1.0"}))
        if yaml_text is not None:
            (folder / "configs" / "inference.yaml").write_text(yaml_text)
            torch.save({}, folder / "models" / "model.pt")
        else:
            (folder / "configs" / "inference.json").write_text(json.dumps(_bundle_config(network)))
            kwargs = {k: v for k, v in network.items() if k != "_target_"}
            torch.save(UNet(**kwargs).state_dict(), folder / "models" / "model.pt")
        p["model"] = folder
    return setup


def _package(change: Callable[[dict], object]):
    """A copy of the tiny test package whose manifest ``change`` edits (or replaces, when it returns text)."""
    def setup(work, p):
        from conftest import make_tiny_package

        _image(work, p)
        package = make_tiny_package(work / "package")
        manifest = json.loads((package.folder / "manifest.json").read_text())
        text = change(manifest)
        (package.folder / "manifest.json").write_text(text if isinstance(text, str) else json.dumps(manifest))
        p["package"] = package.folder
    return setup


def _huge_patch(manifest):
    manifest["inference"]["patch_size"] = [8000, 8000, 8000]


def _huge_channels(manifest):
    manifest["architecture"]["args"]["channels"] = [100000, 8, 16]


def _sparse_weights(work, p):
    _package(lambda manifest: None)(work, p)
    with open(p["package"] / "model.safetensors", "r+b") as handle:
        handle.truncate(50 << 30)  # sparse: takes no disk space


def _deep(manifest):
    return "[" * 100000 + "]" * 100000


def _deep_dataset(work, p):
    _case(work, p)
    p["ds"] = work / "ds"
    p["ds"].mkdir()
    (p["ds"] / "dataset.json").write_text("{\"a\":" * 100000 + "1" + "}" * 100000)


SEGMENT = ["segment", "{image}", "--model", "{tiny}", "--device", "cpu", "--quiet"]
FINETUNE = ["finetune", "--model", "{tiny}", "--data", "{data}", "--out", "{out}", "--epochs", "1", "--iterations",
            "1", "--device", "cpu", "--no-progress-bar"]
ADD = ["dataset", "add", "{image}", "{mask}", "--dataset", "{ds}"]
OUT = ["-o", "{work}/out.nii.gz"]

PROBES = [
    # item 11: options that printed a traceback or were accepted
    Probe("segment-memory-budget-nan", _image, SEGMENT + OUT + ["--memory-budget", "nan"], 2,
          r"--memory-budget must be a positive number of GiB, got nan"),
    Probe("segment-memory-budget-negative", _image, SEGMENT + OUT + ["--memory-budget", "-1"], 2,
          r"--memory-budget must be a positive number"),
    Probe("finetune-lr-nan", _finetune_inputs, FINETUNE + ["--lr", "nan"], 2, r"--lr must be a positive number",
          tool="segmentai-train"),
    Probe("finetune-lr-inf", _finetune_inputs, FINETUNE + ["--lr", "inf"], 2, r"--lr must be a positive number",
          tool="segmentai-train"),
    Probe("dataset-add-into-a-file", _case_into_file, ADD, 2, r"dataset\.txt is a file, not a dataset folder"),
    Probe("dataset-add-unwritable", _case_into_unwritable, ADD, 2, r"cannot write the dataset there"),
    Probe("dataset-add-disk-full-leaves-no-skeleton", lambda work, p: (_case(work, p), p.update(ds=work / "new")),
          ADD, 2, r"No space left on device", fault=_disk_full),
    Probe("dataset-add-imagesTr-is-a-file", _case_images_file, ADD, 2,
          r"imagesTr is a file where the dataset's imagesTr folder belongs"),
    Probe("finetune-disk-full-no-empty-metrics", _finetune_inputs, FINETUNE, 2,
          r"run/metrics\.csv cannot be written \(No space left on device\); what the run wrote before is kept",
          may_change=("run", "run/checkpoint_latest.pt", "run/training_curve.png"), tool="segmentai-train",
          fault=_disk_full_for_metrics, lines=None),  # progress lines come first
    Probe("finetune-out-unwritable", _unwritable_run, FINETUNE, 2, r"cannot write the run there",
          tool="segmentai-train"),
    Probe("nnunet-plans-missing-keys", _nnunet({"configurations": {"3d_fullres": {}}}),
          ["models", "import", "{model}"], 2, r"lacks the entry 'patch_size' that nnU-Net v2 writes"),
    Probe("nnunet-plans-inherits-loop",
          _nnunet({**_PLANS, "configurations": {"3d_fullres": {"inherits_from": "a"}, "a": {"inherits_from":
                                                                                         "3d_fullres"}}}),
          ["models", "import", "{model}"], 2, r"inherit in a loop \(3d_fullres -> a -> 3d_fullres\)"),
    Probe("nnunet-labels-not-integers",
          _nnunet({**_PLANS, "configurations": {"3d_fullres": {
              "patch_size": [32, 32, 32], "spacing": [1, 1, 1], "architecture": {
                  "network_class_name": "x", "arch_kwargs": {"conv_op": "torch.nn.modules.conv.Conv3d"}}}}},
                  labels={"background": 0, "Liver": "one"}),
          ["models", "import", "{model}"], 2, r"holds a value SegmentAI cannot use \(invalid literal for int"),
    Probe("nnunet-absurd-feature-counts", _nnunet(_plain_conv_unet_plans(100000)), ["models", "import", "{model}"], 2,
          r"nnU-Net PlainConvUNet: its parameters alone need .* GiB, more than the .* GiB of memory available"),
    Probe("monai-yaml-python-tag", _monai_bundle(yaml_text="network_def: !!python/object/apply:os.system ['true']\n"),
          ["models", "import", "{model}"], 2, r"inference\.yaml: not plain YAML data \(tags such as !!python"),
    Probe("segment-manifest-nested-deep", _package(_deep), ["segment", "{image}", "--model", "{package}"] + OUT, 2,
          r"manifest\.json: nested too deeply to be a manifest"),
    Probe("segment-manifest-patch-8000", _package(_huge_patch),
          ["segment", "{image}", "--model", "{package}", "--device", "cpu", "--quiet"] + OUT, 2,
          r"works in 8000×8000×8000-voxel windows, which need about .* GiB each, more than the memory budget"),
    Probe("segment-manifest-100000-channels", _package(_huge_channels),
          ["segment", "{image}", "--model", "{package}", "--device", "cpu", "--quiet", "--memory-budget", "1e9"] + OUT,
          2, r"architecture UNet: its parameters alone need .* GiB, more than the .* available \(implausible"),
    Probe("segment-sparse-50-gb-weights", _sparse_weights,
          ["segment", "{image}", "--model", "{package}", "--device", "cpu", "--quiet"] + OUT, 2,
          r"weights file model\.safetensors is 50\.0 GiB, more than the .* GiB of memory available"),
    Probe("models-import-sparse-50-gb-weights", _sparse_weights, ["models", "import", "{package}"], 2,
          r"weights file model\.safetensors is 50\.0 GiB, more than"),
    Probe("dataset-json-nested-deep", _deep_dataset, ADD, 2, r"dataset\.json: nested too deeply"),
    # item 12: NaN voxels of NIfTI files
    Probe("segment-all-nan-nifti", _nan_nifti(1.0), SEGMENT + OUT, 2, r"every voxel is NaN or infinite"),
    Probe("segment-some-nan-nifti", _nan_nifti(0.1), SEGMENT + OUT, 0,
          r"note: 1056 NaN/infinite voxels were set to the lowest finite value", may_change=("out.nii.gz",),
          must_change=("out.nii.gz",), lines=None),
    Probe("refine-all-nan-nifti", _nan_nifti(1.0), ["refine", "{image}", "--ijk", "--fg", "10,10,10"] + OUT, 2,
          r"every voxel is NaN or infinite; nothing to segment"),
    Probe("dataset-add-all-nan", _all_nan_case, ADD, 2, r"no finite voxel \(every voxel is NaN or infinite\)"),
    Probe("dataset-validate-all-nan", _dataset_with_nan_image, ["dataset", "validate", "{ds}"], 2,
          r"imagesTr/case_0001_0000\.nii\.gz: every voxel is NaN or infinite", lines=2),
    # item 13: checks that came too late or said the wrong thing
    Probe("segment-output-folder-unwritable", _image, SEGMENT + ["-o", "{unwritable}/sub/out.nii.gz"], 2,
          r"cannot write the output there"),
    Probe("segment-overview-folder-unwritable", _image, SEGMENT + OUT + ["--overview", "{unwritable}/o.png"], 2,
          r"cannot write the output there"),
    Probe("segment-dangling-link-output", _dangling_output, SEGMENT + ["-o", "{out}"], 2,
          r"out\.nii\.gz is a link to a missing file; pass --overwrite"),
    Probe("segment-zero-spacing", _grid("(0,0,0) (0,1,0) (0,0,1)"), SEGMENT + OUT, 2,
          r"unusable voxel grid: spacing \(0\.0, 1\.0, 1\.0\)"),
    Probe("segment-singular-directions", _grid("(1,0,0) (1,0,0) (0,0,1)"), SEGMENT + OUT, 2,
          r"unusable voxel grid: its axis directions are degenerate"),
    Probe("segment-dicom-folder-quiet", _dicom_without_series, SEGMENT + OUT, 2,
          r"is a folder without a DICOM series"),
    Probe("segment-stale-temporary-removed", _stale_temporary, SEGMENT + OUT, 0, r"Wrote .*out\.nii\.gz",
          may_change=("out.nii.gz", ".out.tmp-0badcafe.nii.gz"),
          must_change=("out.nii.gz", ".out.tmp-0badcafe.nii.gz"), lines=None),
    Probe("models-import-disk-full", _source_package, ["models", "import", "{package}"], 2,
          r"cannot import tiny-test@0\.0\.1 into .*home.*\(No space left on device\); nothing was installed",
          fault=_disk_full_for_copies),
    Probe("models-import-zip", _zip, ["models", "import", "{zip}"], 2,
          r"model\.zip is an archive, not a model folder: unpack it"),
    Probe("monai-unet-without-num-res-units",
          _monai_bundle({"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, "in_channels": 1,
                         "out_channels": 2, "channels": [4, 8, 16], "strides": [2, 2]}),
          ["models", "import", "{model}"], 2, r"num_res_units must be >= 1"),
    # item 8: a run folder that holds something else
    Probe("finetune-out-holds-metrics", _run_folder_with("metrics.csv", "training_curve.png"), FINETUNE, 2,
          r"--out .*run is not empty \(metrics\.csv, training_curve\.png\).*--overwrite", tool="segmentai-train"),
    Probe("finetune-out-unrelated-folder", _run_folder_with("thesis.tex"), FINETUNE, 2,
          r"is not empty \(thesis\.tex\)", tool="segmentai-train"),
    Probe("finetune-out-resume-without-checkpoint", _run_folder_with("metrics.csv"), FINETUNE + ["--resume"], 2,
          r"is not empty \(metrics\.csv\)", tool="segmentai-train"),
]


# --- running ---

def run_cli(tool: str, argv: Sequence[str]) -> int:
    if tool == "segmentai":
        from segmentai_core.cli.main import main
    else:
        sys.path.insert(0, str(ROOT / "training"))
        from segmentai_train.cli import main
    return main(list(argv))


@pytest.mark.parametrize("probe", PROBES, ids=[p.id for p in PROBES])
def test_probe(probe: Probe, tmp_path, capfd, tiny_package, monkeypatch):
    import torch

    torch.set_num_threads(1)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    paths: Dict[str, Path] = {"work": work, "tiny": tiny_package.folder, "unwritable": unwritable_folder(work)}
    probe.setup(work, paths)
    argv = [a.format(**paths) for a in probe.argv]
    outside = {name: snapshot(path) for name, path in (("tiny", tiny_package.folder),)}
    before = snapshot(work)
    capfd.readouterr()
    if probe.fault is not None:
        sys.path.insert(0, str(ROOT / "training"))
        probe.fault(monkeypatch)
    code = run_cli(probe.tool, argv)
    out, err = capfd.readouterr()
    assert code == probe.code, (code, err)
    assert re.search(probe.pattern, err), err
    assert "Traceback" not in err and "WARNING: In" not in err and "ITK" not in err.replace("ITK:", ""), err
    if probe.code != 0:
        lines = err.strip().splitlines()
        assert lines[-1].startswith(f"{probe.tool}: error: "), err
        assert probe.lines is None or len(lines) == probe.lines, err
    after = snapshot(work)
    diff = changed(before, after)
    unexpected = {k for k in diff if not any(fnmatch.fnmatch(k, g) for g in probe.may_change)}
    assert not unexpected, f"changed outside the expected output: {sorted(unexpected)}"
    missing = set(probe.must_change) - diff
    assert not missing, f"expected to change: {sorted(missing)}"
    assert outside == {"tiny": snapshot(tiny_package.folder)}
