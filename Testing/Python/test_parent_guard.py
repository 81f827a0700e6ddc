"""The parent guard: a package fine-tuned on its parent's own label adds no foreground beyond the reach
its corrections showed, measured on the corrected cases and applied by the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segmentai_core.errors import ModelError
from segmentai_core.geometry import Geometry
from segmentai_core.inference.engine import Segmenter
from segmentai_core.inference.parent_guard import allowed_region, apply_guard, correction_distance, parent_foreground
from segmentai_core.models.manifest import load_manifest
from segmentai_core.models.package import ModelPackage
from segmentai_core.testing import TINY_MANIFEST, make_tiny_package
from segmentai_core.volume import Volume

torch.set_num_threads(1)


def ball(shape, centre, radius_voxels) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius_voxels ** 2


def test_far_pieces_go_and_the_boundary_moves_within_reach():
    shape = (40, 40, 40)
    parent = ball(shape, (20, 20, 20), 8)
    child = ball(shape, (20, 20, 20), 10) | ball(shape, (20, 20, 36), 2)  # grown 2 voxels, plus a far piece
    probabilities = np.stack([(~child).astype(np.float32), child.astype(np.float32)])
    removed = apply_guard(probabilities, allowed_region(parent, (2.0, 2.0, 2.0), 5.0))  # 2.5 voxels of reach
    kept = probabilities[1] > 0.5
    assert kept[ball(shape, (20, 20, 20), 10)].all()  # the corrected boundary, 4 mm out, stays
    assert not kept[ball(shape, (20, 20, 36), 2)].any() and removed == int(ball(shape, (20, 20, 36), 2).sum())
    np.testing.assert_allclose(probabilities.sum(0), 1.0)


def test_the_reach_is_the_corrections_percentile_beyond_the_parents_answer():
    shape = (30, 30, 30)
    parent = ball(shape, (15, 15, 15), 6)
    label = ball(shape, (15, 15, 15), 9)  # corrected 3 voxels beyond the parent everywhere
    reach, farthest, outside = correction_distance([(parent, label)], (1.5, 1.5, 1.5))
    assert outside == int((label & ~parent).sum())
    assert 3.0 <= farthest <= 3.5 * 1.5 and 3.0 <= reach <= farthest
    same = correction_distance([(label, label)], (1.5, 1.5, 1.5))
    assert same == (1.5, 0.0, 0)  # nothing beyond: one voxel of reach
    probabilities = np.stack([np.zeros(shape, np.float32), np.zeros(shape, np.float32)])
    probabilities[1][ball(shape, (15, 15, 15), 4) | ball(shape, (15, 15, 27), 2)] = 1.0
    probabilities[0] = 1.0 - probabilities[1]
    assert (parent_foreground(probabilities, largest=True) == ball(shape, (15, 15, 15), 4)).all()


def _head(seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 1, (36, 40, 44)).astype(np.float32)
    array[ball(array.shape, (18, 20, 22), 9)] += 4.0
    return Volume(array, Geometry.create(array.shape, (1.2, 1.1, 1.0), (5.0, -3.0, 2.0), np.diag([1.0, -1.0, 1.0])))


def _guarded(tmp_path, parent_id: str, distance_mm: float, seed: int = 4) -> ModelPackage:
    post = dict(TINY_MANIFEST["postprocessing"], parent_guard={"model": parent_id, "distance_mm": distance_mm})
    return make_tiny_package(tmp_path / "child", seed=seed, id="tiny-child", postprocessing=post)


def _removed(result) -> int:
    note = next(n for n in result.notes if n.startswith("guarded by the parent model"))
    return int(note.split(": ")[1].split()[0])


def test_the_engine_takes_only_the_childs_foreground_beyond_the_parents_reach(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "home"))
    parent = make_tiny_package(tmp_path / "home" / "models" / "tiny-test", seed=2)  # 2 % foreground
    volume = _head()
    parent_labels = Segmenter(parent, device="cpu").segment(volume).labelmap.array
    free = Segmenter(make_tiny_package(tmp_path / "free", seed=4, id="tiny-child"), device="cpu").segment(volume)
    near = Segmenter(_guarded(tmp_path, parent.full_id, 2.0), device="cpu").segment(volume)
    child, unguarded = near.labelmap.array > 0, free.labelmap.array > 0
    assert _removed(near) > 0 and 0 < child.sum() < unguarded.sum()
    assert not (child & ~unguarded).any()  # the guard only takes foreground away
    far = Segmenter(_guarded(tmp_path / "far", parent.full_id, 1000.0), device="cpu").segment(volume)
    assert _removed(far) == 0 and np.array_equal(far.labelmap.array, free.labelmap.array)
    # The parent's own weights under its own guard give the parent's answer: what the guard takes
    # (model-grid voxels above 0.5 whose interpolation left no input voxel in that answer) was not in it.
    itself = Segmenter(_guarded(tmp_path / "self", parent.full_id, 2.0, seed=2), device="cpu").segment(volume)
    assert np.array_equal(itself.labelmap.array, parent_labels)


def test_a_missing_parent_leaves_the_answer_unguarded_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "home"))
    result = Segmenter(_guarded(tmp_path, "absent-model@1.0.0", 3.0), device="cpu").segment(_head())
    assert any(note.startswith("not guarded by the parent model absent-model@1.0.0") for note in result.notes)


@pytest.mark.parametrize("guard", [{"model": "tiny-test@0.0.1", "distance_mm": -1},
                                   {"model": "../x", "distance_mm": 3}, {"model": "tiny-test@0.0.1"}])
def test_an_implausible_guard_is_refused_when_the_package_is_read(tmp_path, guard):
    package = make_tiny_package(tmp_path / "p")
    manifest = json.loads((package.folder / "manifest.json").read_text())
    manifest["postprocessing"]["parent_guard"] = guard
    (package.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError):
        load_manifest(package.folder)


def test_the_parent_is_looked_up_among_installed_packages_never_as_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    make_tiny_package(tmp_path / "tiny-test@0.0.1", seed=2)  # a folder named like the id, in the working folder
    result = Segmenter(_guarded(tmp_path, "tiny-test@0.0.1", 3.0), device="cpu").segment(_head())
    assert any(note.startswith("not guarded by the parent model tiny-test@0.0.1") for note in result.notes)


def test_a_parent_with_the_same_preprocessing_reuses_the_childs_prepared_input(tmp_path, monkeypatch):
    """The input is resampled and normalised once for child and parent, and the answer is the one
    the parent gives when it prepares the input itself."""
    import segmentai_core.inference.engine as engine

    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "home"))
    parent = make_tiny_package(tmp_path / "home" / "models" / "tiny-test", seed=2)
    volume = _head()
    alone = Segmenter(parent, device="cpu").segment(volume).labelmap.array
    calls = []
    real = engine.prepare_input
    monkeypatch.setattr(engine, "prepare_input", lambda v, p: calls.append(1) or real(v, p))
    itself = Segmenter(_guarded(tmp_path / "self", parent.full_id, 2.0, seed=2), device="cpu").segment(volume)
    assert len(calls) == 1
    assert np.array_equal(itself.labelmap.array, alone)  # the parent's own weights under its own guard
    near = Segmenter(_guarded(tmp_path, parent.full_id, 2.0), device="cpu").segment(volume)
    assert len(calls) == 2 and _removed(near) > 0
