"""nnU-Net v2 import: a tiny model trained by nnunetv2 itself, predicted by nnUNetPredictor and by SegmentAI.

The model is trained once per test session (about 30 s on one core) on a generated anisotropic,
CT-like dataset; a second fold is its perturbed copy, so fold ensembling is exercised too.
"""

from __future__ import annotations

import os
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
from segmentai_core.importers import convert_model, detect_format  # noqa: E402
from segmentai_core.importers.checkpoint import load_checkpoint  # noqa: E402
from segmentai_core.inference.engine import Segmenter  # noqa: E402
from segmentai_core.inference.nnunet_pipeline import predict_nnunet  # noqa: E402
from segmentai_core.models import ModelPackage, ModelRegistry  # noqa: E402

TEST_SPACING_XYZ = (4.0, 1.2, 0.9)  # differs from the plans' so both resamplings run


@pytest.fixture(scope="session")
def test_case(tmp_path_factory) -> Path:
    """An image larger than the patch, at another spacing than the training data."""
    image, _ = nnunet_tiny.phantom((56, 60, 18), seed=99, spacing_xyz=TEST_SPACING_XYZ)
    path = tmp_path_factory.mktemp("case") / "case_0000.nii.gz"
    nnunet_tiny.write_nifti(image, path, spacing_xyz=TEST_SPACING_XYZ, origin=(5.0, -3.0, 2.0))
    return path


@pytest.fixture(scope="session")
def reference(nnunet_model, test_case):
    """nnUNetPredictor's label map and probabilities (array order k, j, i), both folds, mirroring on."""
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    torch.set_num_threads(1)
    predictor = nnunet_tiny.reference_predictor(nnunet_model)
    image, properties = SimpleITKIO().read_images([str(test_case)])
    labels, probabilities = predictor.predict_single_npy_array(image, properties, None, None, True)
    return labels, probabilities


@pytest.fixture(scope="session")
def package(nnunet_model, tmp_path_factory) -> ModelPackage:
    return convert_model(nnunet_model, tmp_path_factory.mktemp("converted") / "package")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def test_parity_with_nnunet_predictor(package, reference, test_case):
    import torch

    from segmentai_core.io.volume_io import read_volume

    torch.set_num_threads(1)
    volume = read_volume(test_case)
    network = package.load_network("cpu")
    config = package.manifest.extensions["x-nnunet"]
    assert config["transpose_forward"] != [0, 1, 2]  # the anisotropic axis is i: the transpose is exercised
    ours = predict_nnunet(network, volume, config, torch.device("cpu"), with_probabilities=True)
    labels, probabilities = reference
    assert ours.labels.shape == labels.shape == volume.array.shape
    for value in (1, 2):
        assert (labels == value).sum() > 50, f"the tiny model should find label {value}"
        assert _dice(ours.labels == value, labels == value) >= 0.999
    assert np.abs(ours.probabilities - probabilities).max() < 0.02


def test_segmenter_and_registry_use_the_imported_model(nnunet_model, reference, test_case, tmp_path):
    from segmentai_core.io.volume_io import read_volume

    assert detect_format(nnunet_model) == "nnunet-v2"
    registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "models")
    package = registry.import_package(nnunet_model)
    assert package.manifest.architecture_name == "nnUNet"
    assert set(package.manifest.extensions["x-nnunet"]["files"]) >= {"dataset.json", "plans.json",
                                                                    "fold_0/checkpoint_final.pth"}
    assert (package.folder / "nnunet" / "plans.json").is_file()
    assert registry.get(package.id).full_id == package.full_id
    result = Segmenter(registry.get(package.id), device="cpu").segment(read_volume(test_case))
    labels, _ = reference
    for value in (1, 2):
        assert _dice(result.labelmap.array == value, labels == value) >= 0.999
    assert [label.name for label in result.labels] == ["bright", "dark"]


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_and_never_runs(nnunet_model, tmp_path):
    import torch

    folder = tmp_path / "evil"
    shutil.copytree(nnunet_model, folder)
    marker = tmp_path / "code-ran"
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    content = load_checkpoint(checkpoint)
    content["logging"] = _RunsCode(marker)
    torch.save(content, checkpoint)
    with pytest.raises(ModelError, match="refused.*could run code"):
        convert_model(folder, tmp_path / "package")
    with pytest.raises(ModelError, match="refused"):
        ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "models").import_package(folder)
    assert not marker.exists()
    assert not (tmp_path / "package").exists()
    assert not any((tmp_path / "models").glob("*")), "nothing is left behind in the user folder"


def test_plans_naming_an_unknown_layer_are_refused(nnunet_model, tmp_path):
    import json

    folder = tmp_path / "odd"
    shutil.copytree(nnunet_model, folder)
    plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelError, match="nonlin"):
        convert_model(folder, tmp_path / "package")


def test_not_a_model_folder(tmp_path):
    (tmp_path / "dataset.json").write_text("{}")
    with pytest.raises(ModelError, match="not a model SegmentAI can import"):
        convert_model(tmp_path, tmp_path / "out")
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "dataset.json")


def _release_folder(tmp_path, mirroring):
    """An untrained model in TotalSegmentator's release layout whose checkpoint stores ``mirroring``."""
    import catalog_archives
    import torch

    folder = next(catalog_archives.tiny_nnunet_release(tmp_path / "release").glob("*__3d_fullres"))
    path = folder / "fold_0" / "checkpoint_final.pth"
    content = load_checkpoint(path)
    content["inference_allowed_mirroring_axes"] = mirroring
    torch.save(content, path)
    return folder


@pytest.mark.parametrize("stored, expected", [(None, []), ((0, 2), [0, 2])])
def test_mirror_axes_are_the_checkpoints_and_none_means_no_mirroring(tmp_path, stored, expected):
    """nnUNetPredictor mirrors nothing where a (NoMirroring) checkpoint stores None: neither does SegmentAI."""
    package = convert_model(_release_folder(tmp_path, stored), tmp_path / "package")
    block = package.manifest.extensions["x-nnunet"]
    assert block["mirror_axes"] == expected
    assert block["step_size"] == 0.5 and "resample_mm" not in block  # nnU-Net's defaults unless told


def test_step_size_and_resampling_of_the_models_own_tool(tmp_path):
    from segmentai_core.importers.nnunet import convert_nnunet

    folder = _release_folder(tmp_path, None)
    package = convert_nnunet(folder, tmp_path / "package", step_size=0.8, resample_mm=3.0)
    block = package.manifest.extensions["x-nnunet"]
    assert block["step_size"] == 0.8 and block["resample_mm"] == 3.0
    assert package.manifest.nnunet_settings.resample_mm == 3.0
    assert package.manifest.inference["overlap"] == pytest.approx(0.2)
    for bad in ({"step_size": 0.0}, {"step_size": 1.5}, {"resample_mm": -1.0}):
        with pytest.raises(ModelError):
            convert_nnunet(folder, tmp_path / "refused", **bad)
    assert not (tmp_path / "refused").exists()
