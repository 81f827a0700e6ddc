"""Fine-tuning an imported nnU-Net v2 model: plans kept, new weights, same nnU-Net pipeline at inference.

The tiny model is trained by ``nnunetv2`` itself (``nnunet_tiny``, about 30 s on one core). The
fine-tuning data are its phantoms from another "scanner": the sphere labelled ``bright`` is 350 HU
darker, below the background, which the parent model misses entirely.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2", reason="nnunetv2 trains the tiny reference model")
pytest.importorskip("dynamic_network_architectures")

sys.path.insert(0, str(Path(__file__).parent))
import nnunet_tiny  # noqa: E402

from segmentai_core.dataset import add_case  # noqa: E402
from segmentai_core.errors import InputError  # noqa: E402
from segmentai_core.importers import convert_model  # noqa: E402
from segmentai_core.io import read_volume  # noqa: E402
from segmentai_core.models import ModelPackage  # noqa: E402

SHIFT_HU = 350.0
LABELS = {1: "bright", 2: "dark"}
QUICK = dict(epochs=3, iterations_per_epoch=8, warmup_iterations=2, learning_rate=3e-3, val_fraction=0.25,
             progress_bar=False, device="cpu")


def shifted_case(folder: Path, seed: int, shape_kji=(32, 32, 12)):
    """A phantom of the tiny dataset with its 'bright' sphere darkened, written as NIfTI and read back."""
    image, labels = nnunet_tiny.phantom(shape_kji, seed)
    image = image.astype(np.float32)
    image[labels == 1] -= SHIFT_HU
    folder.mkdir(parents=True, exist_ok=True)
    nnunet_tiny.write_nifti(image.astype(np.int16), folder / f"image_{seed}.nii.gz")
    nnunet_tiny.write_nifti(labels, folder / f"label_{seed}.nii.gz")
    return read_volume(folder / f"image_{seed}.nii.gz"), read_volume(folder / f"label_{seed}.nii.gz")


def make_dataset(folder: Path, scratch: Path, labels=None, seeds=(100, 101, 102, 103)) -> Path:
    for seed in seeds:
        image, label = shifted_case(scratch, seed)
        add_case(folder, image, label, labels or LABELS, {"draft_model": "nnunet-tiny"}, channel_names=("CT",))
    return folder


@pytest.fixture(scope="module")
def parent(nnunet_model, tmp_path_factory) -> ModelPackage:
    """The tiny nnU-Net model (fold_0 trained, fold_1 perturbed), imported as a SegmentAI package."""
    folder = nnunet_model
    return convert_model(folder, tmp_path_factory.mktemp("imported") / "package")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def test_finetune_keeps_plans_and_runs_through_the_nnunet_pipeline(parent, tmp_path):
    import torch

    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.inference.nnunet_pipeline import predict_nnunet
    from segmentai_train.finetune import finetune

    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "data", tmp_path / "raw")
    result = finetune(str(parent.folder), data, tmp_path / "run", **QUICK)

    package = ModelPackage.open(result.package_dir)
    manifest = package.manifest
    assert manifest.architecture_name == "nnUNet"
    assert manifest.architecture["args"]["folds"] == ["fold_0"]
    assert manifest.parent == {"id": parent.id, "version": parent.version}
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        assert (package.folder / "nnunet" / name).read_bytes() == (parent.folder / "nnunet" / name).read_bytes()
    kept = {k: v for k, v in manifest.extensions["x-nnunet"].items() if k not in ("files", "finetuned_from_fold")}
    assert kept == {k: v for k, v in parent.manifest.extensions["x-nnunet"].items() if k != "files"}
    training = manifest.extensions["x-training"]
    assert len(training["data_sha256"]) == 64 and training["validation"] == "held-out"
    assert training["val_dice_before"] == pytest.approx(result.val_dice_before, abs=1e-4)
    assert training["val_dice_after"] == pytest.approx(result.val_dice_after, abs=1e-4)
    assert len(result.history) == 3 and all(np.isfinite(row["val_dice"]) for row in result.history)
    # The parent misses the darkened sphere; three short epochs already find much of it.
    assert result.val_dice_after > result.val_dice_before + 0.1

    old, new = parent.load_network().state_dict(), package.load_network().state_dict()
    assert set(new) == {k for k in old if k.startswith("folds.fold_0.")}
    assert any(not torch.equal(old[k], new[k]) for k in new if new[k].is_floating_point())

    volume, reference = shifted_case(tmp_path / "held-out", seed=200)
    segmented = Segmenter(package, device="cpu").segment(volume)
    direct = predict_nnunet(package.load_network(), volume, manifest.extensions["x-nnunet"], torch.device("cpu"))
    assert np.array_equal(segmented.labelmap.array, direct.labels)  # the engine ran the nnU-Net pipeline
    assert [label.name for label in segmented.labels] == ["bright", "dark"]
    before = Segmenter(parent, device="cpu").segment(volume).labelmap.array
    after = segmented.labelmap.array
    assert _dice(after == 1, reference.array == 1) > _dice(before == 1, reference.array == 1) + 0.1


def test_mismatching_labels_are_refused_and_nothing_is_written(parent, tmp_path, capsys):
    from segmentai_train.cli import main

    data = make_dataset(tmp_path / "data", tmp_path / "raw", labels={1: "tumour", 2: "dark"}, seeds=(100, 101))
    out = tmp_path / "run"
    code = main(["finetune", "--model", str(parent.folder), "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--device", "cpu", "--no-progress-bar"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "differ from the nnU-Net model" in err and "1=tumour" in err
    assert not out.exists()


def test_region_based_models_and_unknown_folds_are_refused(parent, tmp_path):
    from segmentai_train.finetune import finetune

    data = make_dataset(tmp_path / "data", tmp_path / "raw", seeds=(100, 101))
    with pytest.raises(InputError, match="--nnunet-fold 7"):
        finetune(parent, data, tmp_path / "run", source_fold="7", **QUICK)
    regions = tmp_path / "regions"
    shutil.copytree(parent.folder, regions)
    manifest = json.loads((regions / "manifest.json").read_text(encoding="utf-8"))
    manifest["x-nnunet"]["regions_class_order"] = [1, 2]
    (regions / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(InputError, match="region-based"):
        finetune(str(regions), data, tmp_path / "run", **QUICK)
    assert not (tmp_path / "run").exists()
