"""Fine-tuning: transfer learning, a new package naming its parent, outputs, and resume after a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import env, make_dataset, make_tiny_package
from segmentai_core.errors import OutputError
from segmentai_core.inference.engine import Segmenter
from segmentai_core.models.package import ModelPackage
from segmentai_core.phantoms import blob_phantom

torch.set_num_threads(1)
QUICK = dict(epochs=2, iterations_per_epoch=2, warmup_iterations=2, progress_bar=False, device="cpu", bn_batches=2)


def folder_bytes(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_finetune_writes_new_package_and_keeps_source(tmp_path):
    from segmentai_train.finetune import finetune

    source = make_tiny_package(tmp_path / "tiny")
    original = folder_bytes(source.folder)
    data = make_dataset(tmp_path / "data")
    result = finetune(str(source.folder), data, tmp_path / "run", **QUICK)
    assert folder_bytes(source.folder) == original  # never overwritten
    package = ModelPackage.open(result.package_dir)
    manifest = package.manifest
    assert manifest.parent == {"id": "tiny-test", "version": "0.0.1"} and manifest.version == "0.0.2"
    training = manifest.extensions["x-training"]
    assert training["epochs"] == 2 and len(training["data_sha256"]) == 64 and training["head"] == "kept"
    assert training["val_dice_before"] == pytest.approx(result.val_dice_before, abs=1e-4)
    assert manifest.accuracy[0]["metric"] == "Dice"
    for name in ("metrics.csv", "training_curve.png", "checkpoint_latest.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    image, _ = blob_phantom(shape=(40, 48, 44), seed=7)
    assert Segmenter(package, device="cpu").segment(image).labelmap.array.shape == image.array.shape
    with pytest.raises(OutputError, match="exists already"):
        finetune(str(source.folder), data, tmp_path / "run", **QUICK)


def test_new_label_set_reinitialises_head_and_frozen_encoder_stays(tmp_path):
    from segmentai_train.finetune import finetune
    from segmentai_train.transfer import head_prefix, is_encoder_key

    source = make_tiny_package(tmp_path / "tiny")
    data = make_dataset(tmp_path / "data", name="Lesion", count=2)
    result = finetune(source, data, tmp_path / "run", freeze_encoder_epochs=5, val_fraction=0, bn_mode="frozen",
                      **QUICK)
    package = ModelPackage.open(result.package_dir)
    assert [label.name for label in package.manifest.labels] == ["Lesion"]
    assert package.manifest.extensions["x-training"]["head"] == "re-initialised"
    assert package.manifest.extensions["x-training"]["validation"] == "in-sample"
    old, new = source.load_network().state_dict(), package.load_network().state_dict()
    head = head_prefix(source.load_network(), 2)
    encoder = [k for k in old if is_encoder_key(k, "UNet") and k.endswith("weight")]
    assert encoder and all(torch.equal(old[k], new[k]) for k in encoder)
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith(head))


def test_resume_after_kill_continues_from_checkpoint(tmp_path, capsys):
    from segmentai_train.finetune import finetune

    source = make_tiny_package(tmp_path / "tiny")
    data = make_dataset(tmp_path / "data")
    options = ["--epochs", "4", "--iterations", "2", "--warmup", "2", "--device", "cpu", "--threads", "1",
               "--json-progress", "--no-progress-bar"]
    command = [sys.executable, "-m", "segmentai_train.cli", "finetune", "--model", str(source.folder), "--data",
               str(data), "--out", str(tmp_path / "run")] + options
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env())
    for line in process.stdout:
        if json.loads(line)["event"] == "epoch":  # printed after the checkpoint is on disk
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    saved = torch.load(tmp_path / "run" / "checkpoint_latest.pt", weights_only=True)["epoch"]
    assert 1 <= saved < 4 and not (tmp_path / "run" / "model").exists()

    with pytest.raises(OutputError, match="--resume"):
        finetune(source, data, tmp_path / "run", device="cpu", progress_bar=False)
    capsys.readouterr()
    finetune(source, data, tmp_path / "run", resume=True, epochs=4, iterations_per_epoch=2, warmup_iterations=2,
             device="cpu", progress_bar=False, json_progress=True)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "start" and events[0]["start_epoch"] == saved
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(saved + 1, 5))
    rows = (tmp_path / "run" / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4]

    # The interrupted run ends where an uninterrupted one does (per-epoch seeded patch streams).
    straight = finetune(source, data, tmp_path / "straight", epochs=4, iterations_per_epoch=2, warmup_iterations=2,
                        device="cpu", progress_bar=False)
    a = ModelPackage.open(tmp_path / "run" / "model").load_network().state_dict()
    b = ModelPackage.open(straight.package_dir).load_network().state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_parent_anchor_keeps_the_weights_near_the_parents(tmp_path):
    """L2-SP: on the parent's own labels the default pulls toward the parent; a strong pull keeps the
    weights much nearer than none does, with the same seed and steps."""
    from segmentai_train.finetune import finetune, parent_anchor_weight
    from segmentai_train.finetune_config import FinetuneConfig

    assert parent_anchor_weight(FinetuneConfig(), keep_head=True) == 0.01
    assert parent_anchor_weight(FinetuneConfig(), keep_head=False) == 0.0
    assert parent_anchor_weight(FinetuneConfig(from_scratch=True, parent_anchor=1.0), keep_head=True) == 0.0
    source = make_tiny_package(tmp_path / "tiny")
    data = make_dataset(tmp_path / "data")
    parent = source.load_network().state_dict()

    def distance(anchor: float) -> float:
        result = finetune(source, data, tmp_path / f"run-{anchor}", parent_anchor=anchor, learning_rate=1e-2,
                          **QUICK)
        tuned = ModelPackage.open(result.package_dir).load_network().state_dict()
        return sum(float(((tuned[k].float() - parent[k].float()) ** 2).sum()) for k in parent
                   if parent[k].is_floating_point() and "running" not in k)

    assert distance(1000.0) < 0.5 * distance(0.0)


def test_a_package_of_the_parents_own_label_is_guarded_by_the_parent(tmp_path, monkeypatch):
    from segmentai_train.finetune import finetune

    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "home"))
    make_tiny_package(tmp_path / "home" / "models" / "tiny-test")  # installed: the engine finds the parent
    result = finetune("tiny-test", make_dataset(tmp_path / "data"), tmp_path / "run", **QUICK)
    package = ModelPackage.open(result.package_dir)
    parent_id, reach = package.manifest.parent_guard
    measured = package.manifest.extensions["x-training"]["parent_guard"]
    assert parent_id == "tiny-test@0.0.1" and reach == measured["distance_mm"] >= 2.0  # one 2 mm voxel at least
    assert measured["farthest_mm"] >= 0 and measured["voxels_outside"] >= 0
    image, _ = blob_phantom(shape=(40, 48, 44), seed=7)
    notes = Segmenter(package, device="cpu").segment(image).notes
    assert any(note.startswith("guarded by the parent model tiny-test@0.0.1") for note in notes)
    off = finetune("tiny-test", tmp_path / "data", tmp_path / "off", parent_guard=False, **QUICK)
    assert ModelPackage.open(off.package_dir).manifest.parent_guard is None
