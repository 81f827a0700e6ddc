"""nnU-Net v2 ``2d`` configurations: a tiny 2d model trained by nnunetv2 itself, predicted by
nnUNetPredictor and by SegmentAI (slice by slice, 2D Gaussian windows, 2D mirroring).

The 2d model comes from the same planning step as the 3d one of ``test_nnunet_import`` (nnU-Net
plans both configurations at once): about 10 s of training on one core after that step, about 30 s
when this file runs alone.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2", reason="nnunetv2 is a test dependency of the nnU-Net importer")
pytest.importorskip("dynamic_network_architectures")

sys.path.insert(0, str(Path(__file__).parent))
import nnunet_tiny  # noqa: E402

from segmentai_core.errors import ModelError  # noqa: E402
from segmentai_core.importers import convert_model  # noqa: E402
from segmentai_core.importers.checkpoint import load_checkpoint  # noqa: E402
from segmentai_core.io.volume_io import read_volume  # noqa: E402
from segmentai_core.models import ModelPackage  # noqa: E402

TEST_SPACING_XYZ = (4.0, 1.2, 0.9)  # in-plane spacing differs from the plans' 1 mm: both resamplings run
CASES = {
    "large": (56, 60, 18),  # several 2D windows per slice
    "small": (20, 22, 8),  # smaller than the 2D patch in-plane: nnU-Net pads in-plane only
}


@pytest.fixture(scope="module")
def model_2d(tmp_path_factory) -> Path:
    """The tiny dataset's ``2d`` configuration, trained by nnunetv2 (fold_0) plus a perturbed fold_1."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return nnunet_tiny.build_tiny_model(tmp_path_factory.mktemp("nnunet"), epochs=8, iterations=10,
                                            configuration="2d")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def package_2d(model_2d, tmp_path_factory) -> ModelPackage:
    return convert_model(model_2d, tmp_path_factory.mktemp("converted") / "package")


@pytest.fixture(scope="module")
def predictor(model_2d):
    """nnUNetPredictor on both folds, Gaussian windows, step 0.5, mirroring on (its defaults)."""
    return nnunet_tiny.reference_predictor(model_2d)


def _case(folder: Path, name: str) -> Path:
    image, _ = nnunet_tiny.phantom(CASES[name], seed=99, spacing_xyz=TEST_SPACING_XYZ)
    path = folder / f"{name}_0000.nii.gz"
    nnunet_tiny.write_nifti(image, path, spacing_xyz=TEST_SPACING_XYZ, origin=(5.0, -3.0, 2.0))
    return path


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def test_2d_package_records_a_2d_network(package_2d):
    import torch

    manifest = package_2d.manifest
    config = manifest.extensions["x-nnunet"]
    assert config["configuration"] == "2d" and manifest.dimensions == 2
    assert len(config["patch_size"]) == 2 and len(config["spacing"]) == 2
    assert config["mirror_axes"] == [0, 1]
    network = package_2d.load_network("cpu")
    assert any(isinstance(m, torch.nn.Conv2d) for m in network.modules())
    assert not any(isinstance(m, torch.nn.Conv3d) for m in network.modules())


@pytest.mark.parametrize("name", sorted(CASES))
def test_2d_parity_with_nnunet_predictor(package_2d, predictor, name, tmp_path):
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from segmentai_core.inference.nnunet_pipeline import predict_nnunet

    torch.set_num_threads(1)
    path = _case(tmp_path, name)
    image, properties = SimpleITKIO().read_images([str(path)])
    labels, probabilities = predictor.predict_single_npy_array(image, properties, None, None, True)
    volume = read_volume(path)
    config = package_2d.manifest.extensions["x-nnunet"]
    ours = predict_nnunet(package_2d.load_network("cpu"), volume, config, torch.device("cpu"),
                          with_probabilities=True)
    assert ours.labels.shape == labels.shape == volume.array.shape
    for value in (1, 2):
        assert (labels == value).sum() > 20, f"the tiny 2d model should find label {value}"
        assert _dice(ours.labels == value, labels == value) >= 0.999
    assert np.abs(ours.probabilities - probabilities).max() < 0.005


@pytest.mark.parametrize("name", sorted(CASES))
def test_2d_windows_match_nnunet_bit_for_bit(package_2d, predictor, name, tmp_path):
    """On nnU-Net's own preprocessed array, one window per forward pass gives nnU-Net's logits exactly:
    same slicers (slice by slice, in-plane starts), 2D Gaussian, 2D mirror sets, float16 sums, folds."""
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from segmentai_core.inference.nnunet_pipeline import preprocess_nnunet
    from segmentai_core.inference.nnunet_windows import predict_logits, window_slicers
    from segmentai_core.progress import Progress

    torch.set_num_threads(1)
    path = _case(tmp_path, name)
    image, properties = SimpleITKIO().read_images([str(path)])
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    data, _, _ = preprocessor.run_case_npy(image, None, properties, predictor.plans_manager,
                                           predictor.configuration_manager, predictor.dataset_json)
    config = package_2d.manifest.extensions["x-nnunet"]
    ours = preprocess_nnunet(read_volume(path), config).data
    assert ours.shape == data.shape
    assert np.abs(ours - data).max() < 1e-4

    patch = tuple(config["patch_size"])
    padded = (data.shape[1],) + tuple(max(p, s) for p, s in zip(patch, data.shape[2:]))
    expected = predictor._internal_get_sliding_window_slicers(padded)
    assert [(slice(None),) + w for w in window_slicers(padded, patch, 0.5)] == expected

    reference = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).float().numpy()
    logits = predict_logits(package_2d.load_network("cpu"), data, patch, int(config["num_heads"]),
                            config["mirror_axes"], torch.device("cpu"), Progress(), batch_size=1)
    assert np.array_equal(logits, reference)


def test_2d_model_runs_through_the_segmenter(package_2d, tmp_path):
    import torch

    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.inference.nnunet_pipeline import predict_nnunet

    volume = read_volume(_case(tmp_path, "large"))
    result = Segmenter(package_2d, device="cpu").segment(volume)
    direct = predict_nnunet(package_2d.load_network("cpu"), volume, package_2d.manifest.extensions["x-nnunet"],
                            torch.device("cpu"))
    assert np.array_equal(result.labelmap.array, direct.labels)
    assert result.labelmap.geometry == volume.geometry
    assert [label.name for label in result.labels] == ["bright", "dark"]


def test_cascade_configuration_is_refused_in_one_line(model_2d, tmp_path):
    import torch

    folder = tmp_path / "cascade"
    shutil.copytree(model_2d, folder)
    plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    (folder / "plans.json").write_text(json.dumps(plans))
    for fold in ("fold_0", "fold_1"):
        checkpoint = folder / fold / "checkpoint_final.pth"
        content = load_checkpoint(checkpoint)
        content["init_args"]["configuration"] = "3d_cascade_fullres"
        torch.save(content, checkpoint)
    with pytest.raises(ModelError) as raised:
        convert_model(folder, tmp_path / "package")
    message = str(raised.value)
    assert "cascade configuration '3d_cascade_fullres' is not supported" in message
    assert len(message.splitlines()) == 1
    assert not (tmp_path / "package").exists()


def test_finetuning_a_2d_model_is_refused(package_2d, tmp_path, capsys):
    pytest.importorskip("segmentai_train")
    from segmentai_core.dataset import add_case
    from segmentai_train.cli import main

    path = _case(tmp_path, "small")
    _, labels = nnunet_tiny.phantom(CASES["small"], seed=99, spacing_xyz=TEST_SPACING_XYZ)
    nnunet_tiny.write_nifti(labels, tmp_path / "labels.nii.gz", spacing_xyz=TEST_SPACING_XYZ, origin=(5.0, -3.0, 2.0))
    data = tmp_path / "data"
    add_case(data, read_volume(path), read_volume(tmp_path / "labels.nii.gz"), {1: "bright", 2: "dark"},
             channel_names=("CT",))
    out = tmp_path / "run"
    code = main(["finetune", "--model", str(package_2d.folder), "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--device", "cpu", "--no-progress-bar"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "2d" in err and "3d nnU-Net configurations only" in err
    assert not out.exists()
