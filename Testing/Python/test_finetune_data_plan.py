"""Data-aware fine-tuning set-up: modality, CT window, spacing, postprocessing, held-aside validation, budget."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from conftest import make_tiny_package
from segmentai_core.dataset import add_case
from segmentai_core.geometry import Geometry
from segmentai_core.models.manifest import ModelManifest
from segmentai_core.models.package import ModelPackage
from segmentai_core.phantoms import blob_phantom
from segmentai_core.volume import Volume

torch.set_num_threads(1)
QUICK = dict(iterations_per_epoch=2, warmup_iterations=2, progress_bar=False, device="cpu", bn_batches=2)


def ct_case(seed: int = 0, shape=(40, 48, 44), spacing=(1.5, 1.5, 2.5)):
    """A blob phantom in Hounsfield units: air -1000 around a soft-tissue body, the organ at 60 HU."""
    image, mask = blob_phantom(shape=shape, spacing=spacing, seed=seed)
    rng = np.random.default_rng(seed)
    body = np.zeros(shape, bool)
    body[4:-4, 4:-4, 4:-4] = True
    hu = np.where(body, 20.0, -1000.0) + np.where(mask.array > 0, 40.0, 0.0) + rng.normal(0, 8, shape)
    return image.with_array(np.round(hu).astype(np.int16)), mask


def test_fingerprint_tells_ct_from_mr_and_measures_the_structure():
    from segmentai_train.data_plan import fingerprint

    ct = fingerprint([ct_case()])
    assert ct.modality == "CT" and "Hounsfield" in ct.modality_reason
    lo, hi = ct.foreground_percentiles
    assert 20 < lo < 60 < hi < 100  # the organ's own intensities, not the air's
    assert 40 < ct.class_ranges[1][0] < 60 < ct.class_ranges[1][1] < 80
    image, mask = blob_phantom(shape=(40, 48, 44), spacing=(1.5, 1.5, 2.5))
    mr = fingerprint([(image, mask)])
    assert mr.modality == "MR"
    assert fingerprint([(image, mask)], channel_name="CT").modality == "CT"  # the dataset's word wins
    extent_k = np.flatnonzero(mask.array.any(axis=(1, 2)))
    assert mr.extent_mm >= (extent_k[-1] - extent_k[0] + 1) * 2.5 - 1e-6
    assert mr.scan_spacing_mm == 1.5


def _manifest(**overrides) -> ModelManifest:
    from conftest import TINY_MANIFEST

    data = json.loads(json.dumps(TINY_MANIFEST))
    data.update(modality="MR", **overrides)
    return ModelManifest.from_dict(data)


def test_plan_ct_window_and_spacing_for_the_structure():
    from segmentai_train.data_plan import SOFT_TISSUE_WINDOW, Fingerprint, plan

    parent = _manifest()
    liver = Fingerprint("CT", "test", (10.0, 90.0), extent_mm=220.0, smallest_extent_mm=120.0, scan_spacing_mm=0.8)
    chosen = plan(parent, liver, same_labels_as_parent=False, patch_xyz=(80, 80, 80))
    assert chosen.modality == "CT" and chosen.input_channels == ["CT"]
    assert chosen.preprocessing["normalization"] == {"type": "ct_window", "window": list(SOFT_TISSUE_WINDOW)}
    assert chosen.preprocessing["target_spacing"] == [3.25] * 3  # 220 / (0.85 * 80) = 3.24, quarter mm
    bone = Fingerprint("CT", "test", (300.0, 1800.0), 200.0, 150.0, 0.8)
    assert plan(parent, bone, False, (80, 80, 80)).preprocessing["normalization"]["window"] == [-160.0, 1800.0]
    lesion = Fingerprint("MR", "test", (0.0, 1.0), extent_mm=30.0, smallest_extent_mm=12.0, scan_spacing_mm=0.5)
    small = plan(parent, lesion, False, (80, 80, 80))
    assert small.preprocessing["target_spacing"] == [1.0] * 3  # not finer than 1 mm
    assert small.preprocessing["normalization"] == parent.preprocessing["normalization"]  # MR parent, MR data
    same = plan(parent, liver, same_labels_as_parent=True, patch_xyz=(80, 80, 80))
    assert same.preprocessing["target_spacing"] == list(parent.target_spacing)  # the parent's task, its grid
    assert all(isinstance(reason, str) and reason for reason in chosen.reasons)


def test_postprocessing_follows_the_shape_of_the_corrected_labels():
    from segmentai_train.data_plan import plan_postprocessing

    one = np.zeros((20, 20, 20), np.uint8)
    one[5:15, 5:15, 5:15] = 1
    two = one.copy()
    two[5:15, 5:15, 9:11] = 0  # two pieces
    shell = one.copy()
    shell[7:13, 7:13, 7:13] = 0  # a hollow ball: filling would add its inside
    assert plan_postprocessing({}, [one], 2)[0] == {"largest_component": True, "fill_holes": True}
    assert plan_postprocessing({}, [one, two], 2)[0]["largest_component"] is False
    assert plan_postprocessing({}, [shell], 2)[0]["fill_holes"] is False


def test_ct_intensity_gate_drops_components_of_the_wrong_hounsfield_units():
    from segmentai_core.inference.postprocess import drop_off_intensity
    from segmentai_train.data_plan import plan_postprocessing

    image = np.full((20, 20, 30), -100.0, np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[2:8, 2:8, 2:8], image[2:8, 2:8, 2:8] = 1, 45.0  # the organ, at its own HU
    labels[10:19, 10:19, 12:28], image[10:19, 10:19, 12:28] = 1, 13.0  # a larger 13 HU look-alike
    gated = drop_off_intensity(labels.copy(), image, {1: (19.0, 73.0)})
    assert gated[2:8, 2:8, 2:8].all() and not gated[10:19, 10:19, 12:28].any()
    nothing_in_range = drop_off_intensity(labels.copy(), image, {1: (100.0, 200.0)})
    assert nothing_in_range[2:8, 2:8, 2:8].all() and not nothing_in_range[10:19].any()  # the nearest stays
    post, reasons = plan_postprocessing({}, [labels], 2, {1: (19.0, 73.0)})
    assert post["intensity_range"] == {"1": [19.0, 73.0]} and any("HU fences" in r for r in reasons)
    assert "intensity_range" not in plan_postprocessing({"intensity_range": {"1": [0, 1]}}, [labels], 2)[0]


def test_held_aside_slab_is_the_structures_inferior_end_and_never_trains():
    from segmentai_train.holdout import split_case
    from segmentai_train.sampling import CanonicalCase

    label = np.zeros((60, 20, 20), np.uint8)
    label[10:50, 5:15, 5:15] = 1
    image = np.arange(label.size, dtype=np.float32).reshape(label.shape)
    train, val = split_case(CanonicalCase("c", image, label), 0.25)
    assert val.image.shape[0] == 20 and train.image.shape[0] == 40  # cut at 10 + 40 * 0.25
    assert np.array_equal(np.concatenate([val.image, train.image]), image)  # disjoint, nothing lost
    assert val.label.sum() == 10 * 10 * 10 and train.label.sum() == 30 * 10 * 10
    tiny = np.zeros((60, 20, 20), np.uint8)
    tiny[10:14, 5:8, 5:8] = 1
    assert split_case(CanonicalCase("t", image, tiny)) is None  # too small to cut: in-sample instead


def test_ct_finetune_writes_a_true_ct_manifest_and_validates_held_aside(tmp_path):
    from segmentai_train.finetune import finetune

    source = make_tiny_package(tmp_path / "tiny", modality="MR")
    data = tmp_path / "data"
    add_case(data, *ct_case(seed=1), {1: "Organ"}, {"draft_model": "tiny-test@0.0.1"})
    result = finetune(source, data, tmp_path / "run", epochs=2, **QUICK)
    manifest = ModelPackage.open(result.package_dir).manifest
    assert manifest.modality == "CT" and manifest.input_channels == ["CT"]
    assert manifest.preprocessing["normalization"]["type"] == "ct_window"
    training = manifest.extensions["x-training"]
    assert training["validation"] == "held-aside" and training["modality"] == "CT"
    assert any("CT normalisation" in reason for reason in training["plan"])
    assert "Organ" in manifest.name and "brain" not in manifest.task.lower()
    low, high = manifest.intensity_range[1]  # the organ's fences in HU: 60 HU organ, noise 8 HU
    assert 20 < low < 60 < high < 100
    kept = finetune(source, data, tmp_path / "kept", epochs=1, plan_data=False, holdout_fraction=0, **QUICK)
    old = ModelPackage.open(kept.package_dir).manifest
    assert old.preprocessing == source.manifest.preprocessing and old.modality == "MR"
    assert old.extensions["x-training"]["validation"] == "in-sample"


def test_budget_filling_run_plans_its_epochs_and_scratch_baseline_runs(tmp_path):
    from segmentai_train.finetune import finetune

    source = make_tiny_package(tmp_path / "tiny")
    data = tmp_path / "data"
    for seed in range(2):
        add_case(data, *blob_phantom(shape=(40, 48, 44), seed=seed), {1: "Object"}, {"draft_model": "t"})
    started = time.monotonic()
    result = finetune(source, data, tmp_path / "run", time_limit_s=5, fill_budget=True, patience=0, **QUICK)
    assert 1 <= result.epochs < 400  # the budget decided, not the cap (how many: the machine's speed)
    assert time.monotonic() - started < 2 * 5 + 10  # the budget is the whole run's (loose: a loaded machine)
    assert [row["epoch"] for row in result.history] == list(range(1, result.epochs + 1))
    scratch = finetune(source, data, tmp_path / "scratch", epochs=1, from_scratch=True, **QUICK)
    a = ModelPackage.open(scratch.package_dir).load_network().state_dict()
    b = source.load_network().state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith("weight"))


def test_epoch_plan_fills_the_time_left_and_keeps_one_epoch_for_packaging(monkeypatch):
    from types import SimpleNamespace

    from segmentai_train import finetune_trainer
    from segmentai_train.finetune_trainer import FinetuneTrainer

    clock = [1000.0]
    monkeypatch.setattr(finetune_trainer.time, "monotonic", lambda: clock[0])
    ft = SimpleNamespace(epochs=400, max_epochs=400)
    trainer = SimpleNamespace(deadline=1000.0 + 600, _epoch_seconds=[], _epoch_t0=1000.0 - 10.0, ft=ft,
                              config=SimpleNamespace(epochs=400), dist=SimpleNamespace(enabled=False))
    FinetuneTrainer.plan_epochs(trainer, 0)  # the first epoch took 10 s, 600 s are left
    assert ft.epochs == trainer.config.epochs == 1 + 59  # 59 more: one epoch's time stays for the package
    clock[0], trainer._epoch_t0 = 1590.0, 1570.0  # later: 20 s epochs, 10 s left
    FinetuneTrainer.plan_epochs(trainer, 30)
    assert ft.epochs == 31  # no time for another: this was the last
    trainer.epoch, trainer.wait, ft.epochs = 40, 12, 60
    assert not FinetuneTrainer._may_stop_early(trainer)  # 12 epochs without a gain: not half the plan
    trainer.wait = 30
    assert FinetuneTrainer._may_stop_early(trainer)  # no gain for half the planned epochs: the run may stop


def test_cli_minutes_without_epochs_fills_the_budget():
    from segmentai_train.cli import build_parser, finetune_config

    parser = build_parser()
    args = parser.parse_args(["finetune", "--model", "m", "--data", "d", "--out", "o", "--minutes", "10"])
    config = finetune_config(args)
    assert config.fill_budget and config.time_limit_s == 600
    args = parser.parse_args(["finetune", "--model", "m", "--data", "d", "--out", "o", "--minutes", "10",
                              "--epochs", "5"])
    config = finetune_config(args)
    assert not config.fill_budget and config.epochs == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["finetune", "--model", "m", "--data", "d", "--out", "o", "--holdout-fraction", "x"])


def test_volume_helper_keeps_voxels_in_place():
    """The bench's slab helper (cut across slices) moves the origin so each voxel stays where it was."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from finetune_real_cases import _slab

    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    volume = Volume(np.zeros((10, 6, 4), np.float32), Geometry.create((10, 6, 4), (0.7, 0.9, 2.0), (3, 4, 5),
                                                                     direction))
    part = _slab(volume, 3, 8)
    assert part.array.shape == (5, 6, 4)
    np.testing.assert_allclose(part.geometry.ijk_to_lps(np.array([[1, 2, 0]])),
                               volume.geometry.ijk_to_lps(np.array([[1, 2, 3]])))
