"""nnU-Net v2 postprocessing: ``postprocessing.pkl`` read as data, applied like nnunetv2's ``apply_postprocessing``.

The pickle is written by nnunetv2's own ``determine_postprocessing`` on cross-validation
predictions with stray islands, in the trained tiny model's ``crossval_results_folds_0_1``
folder; SegmentAI's result on a case with a stray island is compared voxel for voxel with
nnunetv2's ``apply_postprocessing``. Pickles naming anything else are refused unrun.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2", reason="nnunetv2 is a test dependency of the nnU-Net importer")
pytest.importorskip("dynamic_network_architectures")

sys.path.insert(0, str(Path(__file__).parent))
import nnunet_tiny  # noqa: E402

from segmentai_core.errors import ModelError, SegmentAIError  # noqa: E402
from segmentai_core.importers import convert_model  # noqa: E402
from segmentai_core.importers.nnunet_postprocessing import read_postprocessing  # noqa: E402
from segmentai_core.inference.nnunet_postprocess import apply_nnunet_postprocessing  # noqa: E402
from segmentai_core.models import ModelRegistry  # noqa: E402

TEST_SPACING_XYZ = (4.0, 1.2, 0.9)
CROSSVAL = "crossval_results_folds_0_1"


def _nnunet_functions():
    from nnunetv2.postprocessing.remove_connected_components import (
        apply_postprocessing,
        remove_all_but_largest_component_from_segmentation,
    )

    return apply_postprocessing, remove_all_but_largest_component_from_segmentation


def _island(labels: np.ndarray, value: int, corner) -> None:
    k, j, i = corner
    labels[k:k + 2, j:j + 3, i:i + 3] = value


@pytest.fixture(scope="module")
def model_with_postprocessing(nnunet_model, tmp_path_factory) -> Path:
    """A copy of the model whose crossval folder holds a postprocessing.pkl from determine_postprocessing."""
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing

    folder = tmp_path_factory.mktemp("pp") / nnunet_model.name
    shutil.copytree(nnunet_model, folder)
    predictions, reference = folder / CROSSVAL, folder.parent / "reference"
    predictions.mkdir()
    reference.mkdir()
    for n in range(3):  # "predictions" = the truth plus stray islands of both labels: removing them helps
        _, truth = nnunet_tiny.phantom((32, 32, 12), seed=n)
        predicted = truth.copy()
        _island(predicted, 1, (1, 1, 1))
        _island(predicted, 2, (28, 27, 8))
        nnunet_tiny.write_nifti(truth, reference / f"case_{n:03d}.nii.gz")
        nnunet_tiny.write_nifti(predicted, predictions / f"case_{n:03d}.nii.gz")
    determine_postprocessing(str(predictions), str(reference), str(folder / "plans.json"),
                             str(folder / "dataset.json"), num_processes=1, keep_postprocessed_files=False)
    assert (predictions / "postprocessing.pkl").is_file()
    return folder


@pytest.fixture(scope="module")
def island_case(tmp_path_factory) -> Path:
    """The test phantom plus a small bright block far from both objects: a stray island of label 1."""
    image, _ = nnunet_tiny.phantom((56, 60, 18), seed=99, spacing_xyz=TEST_SPACING_XYZ)
    image[2:5, 48:56, 2:8] = 340
    path = tmp_path_factory.mktemp("island") / "case_0000.nii.gz"
    nnunet_tiny.write_nifti(image, path, spacing_xyz=TEST_SPACING_XYZ, origin=(5.0, -3.0, 2.0))
    return path


def _components(mask: np.ndarray) -> int:
    from scipy.ndimage import generate_binary_structure, label

    return int(label(mask, structure=generate_binary_structure(3, 3))[1])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def test_postprocessing_parity_with_nnunetv2(model_with_postprocessing, island_case, tmp_path):
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_pickle
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.inference.nnunet_pipeline import predict_nnunet
    from segmentai_core.io.volume_io import read_volume

    apply_postprocessing, _ = _nnunet_functions()
    torch.set_num_threads(1)
    functions, kwargs = load_pickle(str(model_with_postprocessing / CROSSVAL / "postprocessing.pkl"))  # ours: trusted
    assert functions, "determine_postprocessing should have chosen to remove the islands"

    package = convert_model(model_with_postprocessing, tmp_path / "package")
    steps = package.manifest.extensions["x-nnunet"]["postprocessing"]
    assert [s["function"] for s in steps] == ["remove_all_but_largest_component"] * len(functions)
    assert f"{CROSSVAL}/postprocessing.pkl" in package.manifest.extensions["x-nnunet"]["files"]

    volume = read_volume(island_case)
    segmenter = Segmenter(package, device="cpu")
    raw = predict_nnunet(segmenter.network, volume, package.manifest.extensions["x-nnunet"], torch.device("cpu"))
    ours = segmenter.segment(volume).labelmap.array
    assert _components(raw.labels == 1) > 1, "the case must have a stray island of label 1"
    # The same input label map: SegmentAI's postprocessing equals nnunetv2's voxel for voxel.
    theirs_on_ours = apply_postprocessing(raw.labels.copy(), functions, kwargs)
    assert np.array_equal(ours, theirs_on_ours)
    assert _components(ours == 1) == 1 and (ours != raw.labels).sum() > 0

    # End to end against nnUNetPredictor followed by apply_postprocessing.
    predictor = nnunet_tiny.reference_predictor(model_with_postprocessing)
    image, properties = SimpleITKIO().read_images([str(island_case)])
    reference = apply_postprocessing(predictor.predict_single_npy_array(image, properties, None, None, False),
                                     functions, kwargs)
    for value in (1, 2):
        assert (reference == value).sum() > 50
        assert _dice(ours == value, reference == value) >= 0.999
    assert _components(reference == 1) == 1


@pytest.mark.parametrize("targets,background", [
    (1, 0), ([1, 2], 0), ((1, 2), 0), ([(1, 2), 3], 0), ([2, (1, 3)], 2), ([3], 1),
])
def test_steps_match_nnunetv2_on_random_label_maps(targets, background, tmp_path):
    """Labels, regions (tuples), lists of both and another background, parsed from a real pickle."""
    from batchgenerators.utilities.file_and_folder_operations import save_pickle

    apply_postprocessing, function = _nnunet_functions()
    kwargs = {"labels_or_regions": targets, "background_label": background}
    save_pickle(([function], [kwargs]), str(tmp_path / "postprocessing.pkl"))
    steps = read_postprocessing(tmp_path / "postprocessing.pkl")
    rng = np.random.default_rng(7)
    for trial in range(4):
        labels = rng.choice(4, size=(9, 11, 10), p=[0.55, 0.15, 0.15, 0.15]).astype(np.uint8)
        if trial == 3:  # two equal largest components: both are kept
            labels[:] = 0
            labels[0:2, 0:2, 0:2] = 1
            labels[6:8, 6:8, 6:8] = 1
        expected = apply_postprocessing(labels.copy(), [function], [kwargs])
        assert np.array_equal(apply_nnunet_postprocessing(labels.copy(), steps), expected)


class _RunsCode:
    """Unpickling this calls os.system: what a malicious postprocessing.pkl does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(model: Path, root: Path, content: bytes) -> Path:
    folder = root / "model"
    shutil.copytree(model, folder)
    (folder / CROSSVAL).mkdir()
    (folder / CROSSVAL / "postprocessing.pkl").write_bytes(content)
    return folder


def test_postprocessing_with_code_is_refused_and_never_runs(nnunet_model, tmp_path):
    marker = tmp_path / "code-ran"
    folder = _plant(nnunet_model, tmp_path, pickle.dumps(([_RunsCode(marker)], [{}])))
    with pytest.raises(ModelError, match=r"postprocessing.pkl was refused.*(posix|os|nt)\.system.*could run code"):
        convert_model(folder, tmp_path / "package")
    registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "models")
    with pytest.raises(ModelError, match="refused"):
        registry.import_package(folder)
    assert not marker.exists()
    assert not (tmp_path / "package").exists()
    assert not any((tmp_path / "models").glob("*")), "nothing is imported"


@pytest.mark.parametrize("make", ["os.system", "other nnunetv2 function", "called function", "unknown kwargs"])
def test_other_callables_and_shapes_are_refused(make, tmp_path):
    _, function = _nnunet_functions()
    from nnunetv2.postprocessing import remove_connected_components

    content = {
        "os.system": lambda: pickle.dumps(([os.system], [{"command": "true"}])),
        "other nnunetv2 function": lambda: pickle.dumps(([remove_connected_components.load_postprocess_save], [{}])),
        "called function": lambda: pickle.dumps(_CallsKnown()),
        "unknown kwargs": lambda: pickle.dumps(([function], [{"labels_or_regions": 1, "connectivity": 1}])),
    }[make]()
    path = tmp_path / "postprocessing.pkl"
    path.write_bytes(content)
    with pytest.raises(SegmentAIError) as caught:
        read_postprocessing(path)
    message = str(caught.value)
    assert "\n" not in message and "postprocessing.pkl" in message
    if make == "os.system":
        assert "system" in message and "refused" in message
    if make == "other nnunetv2 function":
        assert "load_postprocess_save" in message


class _CallsKnown:
    """A pickle that calls the allow-listed function while loading (allowed names are never callable)."""

    def __reduce__(self):
        _, function = _nnunet_functions()
        return (function, ([0, 1], 1))
