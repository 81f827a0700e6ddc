"""Interaction session: data-driven prompt sequences, undo/redo, RAS vs IJK, protection, predictors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from segmentai_core.errors import InputError, ModelError
from segmentai_core.interaction import (InteractionSession, InteractionWorker, ModelPredictor, RandomWalkerPredictor,
                                        WorkingInputs)
from segmentai_core.metrics import dice
from segmentai_core.phantoms import blob_phantom, rotation_matrix

OBLIQUE = rotation_matrix((1.0, 2.0, 0.5), 0.4)


@pytest.fixture(scope="module")
def worker():
    with InteractionWorker(threads=1) as shared:
        yield shared


def _phantom(oblique: bool = False):
    direction = OBLIQUE if oblique else np.eye(3)
    return blob_phantom(shape=(24, 40, 36), spacing=(1.2, 1.0, 2.5), direction=direction, origin=(10.0, -20.0, 5.0))


def _centre_ijk(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask > 0).mean(axis=0)[::-1]


# Each case: a sequence of prompts in voxel indices relative to the object's centre (i, j, k) and the
# Dice that the mask must reach after the last one (random-walker fallback: deterministic).
PROMPT_CASES = [
    ("one-click", [("point", (0, 0, 0), True)], 0.8),
    ("click-then-background", [("point", (0, 0, 0), True), ("point", (-17, -18, -9), False)], 0.8),
    ("two-clicks", [("point", (0, 0, 0), True), ("point", (6, 0, 0), True)], 0.75),
    ("scribble", [("scribble", ((-4, 0, 0), (4, 0, 0)), True)], 0.8),
    ("box-3d", [("box", ((-14, -17, -6), (14, 17, 6)), True)], 0.78),
]


@pytest.mark.parametrize("name, prompts, threshold", PROMPT_CASES, ids=[c[0] for c in PROMPT_CASES])
def test_prompt_sequence_reaches_dice_and_undo_is_exact(worker, name, prompts, threshold):
    image, truth = _phantom()
    centre = _centre_ijk(truth.array)
    session = InteractionSession(RandomWalkerPredictor(), worker=worker)
    session.set_image(image)
    masks = [session.mask.copy()]
    for kind, where, positive in prompts:
        if kind == "point":
            update = session.add_point(centre + np.array(where), positive, space="ijk")
        elif kind == "scribble":
            update = session.add_scribble(centre + np.array(where), positive, space="ijk")
        else:
            update = session.add_box(centre + np.array(where[0]), centre + np.array(where[1]), space="ijk")
        assert update.mask.shape == truth.array.shape and not update.mask.flags.writeable
        masks.append(session.mask.copy())
    assert dice(session.mask, truth.array) >= threshold
    assert len(session.prompts) == len(prompts)
    for expected in reversed(masks[:-1]):
        session.undo()
        np.testing.assert_array_equal(session.mask, expected)
    assert session.prompts == () and not session.can_undo
    for expected in masks[1:]:
        session.redo()
        np.testing.assert_array_equal(session.mask, expected)
    assert len(session.prompts) == len(prompts)


def test_ras_and_ijk_prompts_agree_on_oblique_anisotropic_volume(worker):
    image, truth = _phantom(oblique=True)
    assert image.geometry.is_oblique()
    centre = _centre_ijk(truth.array)
    background = centre + np.array([-15.0, 16.0, -7.0])
    results = []
    for space in ("ijk", "ras"):
        session = InteractionSession(RandomWalkerPredictor(), worker=worker)
        session.set_image(image)
        convert = (lambda p: p) if space == "ijk" else image.geometry.ijk_to_ras
        session.add_point(convert(centre), True, space=space)
        session.add_point(convert(background), False, space=space)
        results.append(session.mask.copy())
        np.testing.assert_allclose(session.prompts[0].array, centre[None], atol=1e-6)
    np.testing.assert_array_equal(results[0], results[1])
    assert dice(results[0], truth.array) > 0.8


def test_protected_segments_are_never_taken(worker):
    image, truth = _phantom()
    protected = np.zeros_like(truth.array)
    protected[:, :, : truth.array.shape[2] // 2] = truth.array[:, :, : truth.array.shape[2] // 2]
    centre = _centre_ijk(truth.array)
    for protect in (True, False):
        session = InteractionSession(RandomWalkerPredictor(), worker=worker, protect_other_segments=protect)
        session.set_image(image)
        session.set_target(None, protected=protected)
        session.add_point(centre, True, space="ijk")
        session.add_point(centre + np.array([-5.0, 0.0, 0.0]), True, space="ijk")
        overlap = int((session.mask.astype(bool) & protected.astype(bool)).sum())
        if protect:
            assert overlap == 0
        else:
            assert overlap > 0


def test_initial_mask_reset_and_two_dimensional_box(worker):
    image, truth = _phantom()
    initial = np.zeros_like(truth.array)
    initial[10:14, 15:25, 15:22] = 1
    session = InteractionSession(RandomWalkerPredictor(), worker=worker)
    session.set_image(image)
    session.set_target(initial)
    centre = _centre_ijk(truth.array)
    k = int(round(centre[2]))
    lo, hi = centre + np.array([-6.0, -5.0, 0.0]), centre + np.array([6.0, 5.0, 0.0])
    session.add_box(lo, hi, space="ijk")
    on_slice = session.mask[k].copy()
    i, j = np.meshgrid(np.arange(on_slice.shape[1]), np.arange(on_slice.shape[0]))
    outside = (i < lo[0] - 0.5) | (i > hi[0] + 0.5) | (j < lo[1] - 0.5) | (j > hi[1] + 0.5)
    assert not (on_slice.astype(bool) & outside & ~initial[k].astype(bool)).any()
    # A later click outside the rectangle, on the box's slice, is the user correcting the box: honoured.
    missed = np.argwhere(truth.array[k].astype(bool) & outside & ~session.mask[k].astype(bool))
    assert len(missed)
    j_missed, i_missed = missed[len(missed) // 2]
    session.add_point((i_missed, j_missed, k), True, space="ijk")
    assert session.mask[k, j_missed, i_missed] == 1
    session.undo()
    session.reset()
    np.testing.assert_array_equal(session.mask, initial)
    assert session.prompts == ()
    session.undo()
    assert len(session.prompts) == 1


def test_user_errors_are_one_line(worker):
    image, truth = _phantom()
    session = InteractionSession(RandomWalkerPredictor(), worker=worker)
    with pytest.raises(InputError, match="set_image"):
        session.add_point((0, 0, 0))
    session.set_image(image)
    with pytest.raises(InputError, match="outside the image"):
        session.add_point((500.0, 0.0, 0.0), space="ijk")
    with pytest.raises(InputError, match="shape"):
        session.set_target(np.zeros((3, 3, 3)))
    with pytest.raises(InputError, match="coordinate space"):
        session.add_point((1, 1, 1), space="xyz")
    with pytest.raises(InputError, match="two axes"):
        session.add_box((5, 5, 5), (5, 5, 9), space="ijk")


def _interactive_package(folder):
    import torch

    from segmentai_core.models.networks import build_network
    from segmentai_core.models.package import write_model_package

    manifest = {
        "schema_version": 1, "id": "interactive-tiny", "version": "0.0.1", "name": "tiny", "task": "interactive",
        "modality": "any", "dimensions": 3,
        "architecture": {"name": "UNet", "args": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1,
                                                  "norm": "batch"}},
        "input_channels": ["image", "previous_mask", "positive_guidance", "negative_guidance"],
        "labels": {"1": {"name": "Object", "color": [1.0, 0.5, 0.0]}},
        "preprocessing": {"orientation": "RAS", "target_spacing": [2.0, 2.0, 2.0],
                          "normalization": {"type": "percentile", "lower": 0.5, "upper": 99.5}},
        "inference": {"patch_size": [32, 32, 32], "overlap": 0.0},
        "postprocessing": {}, "weights": {"file": "model.safetensors"},
        "license": {"weights": "Apache-2.0"}, "training_data": "none (random weights)", "accuracy": [],
        "x-interactive": {"max_size": 32, "margin_mm": 6.0, "min_extent_mm": 24.0},
    }
    torch.manual_seed(0)
    network = build_network(manifest["architecture"], 3, 4, 2)
    return write_model_package(folder, manifest, network.state_dict())


def test_model_predictor_runs_on_one_persistent_thread(tmp_path, worker):
    package = _interactive_package(tmp_path / "interactive-tiny")
    predictor = ModelPredictor(package, device="cpu")
    assert predictor.settings.size_multiple == 4 and predictor.settings.max_size == 32
    threads = []
    original = predictor.predict

    def recording(inputs: WorkingInputs):
        threads.append(threading.get_ident())
        return original(inputs)

    predictor.predict = recording  # record where inference runs
    image, truth = _phantom()
    session = InteractionSession(predictor, worker=worker)
    session.set_image(image)
    centre = _centre_ijk(truth.array)
    for offset in (0.0, 3.0, -3.0):
        update = session.add_point(centre + offset, True, space="ijk")
        assert update.mask.shape == truth.array.shape
    assert len(set(threads)) == 1 and threads[0] == worker.thread_ident() != threading.get_ident()
    working = session.last_region.working
    assert all(s % 4 == 0 and s <= 32 for s in working.shape)


def test_test_time_flips_average_mirrored_predictions(tmp_path):
    package = _interactive_package(tmp_path / "interactive-tiny")
    rng = np.random.default_rng(4)
    channels = [rng.random((16, 20, 24)).astype(np.float32) for _ in range(4)]
    inputs = WorkingInputs(*channels, spacing_mm=2.0)
    mirrored = WorkingInputs(*[np.ascontiguousarray(c[:, :, ::-1]) for c in channels], spacing_mm=2.0)
    plain, flipped = ModelPredictor(package, device="cpu"), ModelPredictor(package, device="cpu", flips=1)
    assert plain.flips == 0  # the package does not ask for test-time flips
    # Averaging over {identity, mirror along i} makes the answer equivariant to that mirror.
    np.testing.assert_allclose(flipped.predict(mirrored), flipped.predict(inputs)[:, :, ::-1], atol=1e-5)
    assert np.abs(plain.predict(mirrored) - plain.predict(inputs)[:, :, ::-1]).max() > 1e-3
    with pytest.raises(ModelError, match="test-time flips"):
        ModelPredictor(package, device="cpu", flips=4)


def test_non_interactive_model_is_refused(tiny_package):
    with pytest.raises(ModelError, match="not an interactive model"):
        ModelPredictor(tiny_package)


def test_region_is_local_on_a_large_volume(worker):
    shape = (40, 160, 160)
    image, truth = blob_phantom(shape=shape, spacing=(1.0, 0.5, 0.5))
    small = np.zeros(shape, dtype=np.uint8)
    small[18:23, 70:90, 70:90] = 1  # refine a small object: the work stays near it
    session = InteractionSession(RandomWalkerPredictor(), worker=worker)
    session.set_image(image)
    session.set_target(small)
    update = session.add_point((80.0, 96.0, 20.0), True, space="ijk")  # beside the small object
    crop = session.last_region.crop
    assert all(s.stop - s.start < n for s, n in zip(crop[1:], shape[1:]))
    assert update.region is not None and all(r.stop - r.start < n for r, n in zip(update.region[1:], shape[1:]))


def test_shipped_interactive_model_segments_a_clicked_object(worker):
    from segmentai_core.interaction import find_interactive_model
    from segmentai_core.models.registry import ModelRegistry
    from segmentai_core.phantoms import shapes_phantom

    # The shipped model measured ahead of the random walker after 1-5 clicks: it is the default.
    package = ModelRegistry().get("interactive-unet")
    assert find_interactive_model().full_id == package.full_id
    from segmentai_train.interactive.clicker import next_click

    curves = []
    for seed in (123_456, 123_457, 123_458):
        image, labels = shapes_phantom((48, 48, 48), spacing=(1.5, 1.5, 1.5), seed=seed)
        values, sizes = np.unique(labels.array[labels.array > 0], return_counts=True)
        truth = labels.array == values[np.argmax(sizes)]
        session = InteractionSession(ModelPredictor(package, device="cpu"), worker=worker)
        session.set_image(image)
        scores = []
        for _ in range(5):
            kji, positive = next_click(session.mask, truth, (1.5, 1.5, 1.5))
            session.add_point(kji[::-1].astype(float), positive, space="ijk")
            scores.append(dice(session.mask, truth))
        curves.append(scores)
        assert session.mask.sum() < truth.size // 4
    mean = np.mean(curves, axis=0)
    print(np.round(curves, 3), np.round(mean, 3))
    # Clicks help: Dice grows from the first click to the fifth (measured: 1.1.0 0.10 -> 0.40, 1.2.0 0.13 -> 0.41
    # on these three; an under-trained 1.0.0 stayed flat) and the object is found, not the whole grid.
    assert mean[-1] >= 0.3 and mean[-1] >= mean[0] + 0.2


class _IgnoresPrompts:
    """A predictor that answers every prompt with the previous mask: a model that ignores a click."""

    name = "ignores-prompts"

    def __init__(self) -> None:
        reference = RandomWalkerPredictor()
        self.settings, self.normalization, self.sigma = reference.settings, reference.normalization, 1.0

    def load(self) -> None:
        pass

    def predict(self, inputs: WorkingInputs) -> np.ndarray:
        return inputs.previous.astype(np.float32)


@pytest.mark.parametrize("rescue", [True, False])
def test_a_click_the_model_ignores_is_answered_by_the_fallback(worker, rescue):
    image, truth = _phantom(oblique=True)
    session = InteractionSession(_IgnoresPrompts(), worker=worker, rescue_missed_clicks=rescue)
    session.set_image(image)
    centre = _centre_ijk(truth.array)
    update = session.add_point(centre, True, space="ijk")
    kji = tuple(np.rint(centre[::-1]).astype(int))
    if rescue:
        assert session.rescued_clicks == 1 and session.mask[kji] == 1
        assert dice(session.mask, truth.array > 0) > 0.7
        session.undo()
        assert not session.mask.any()
    else:
        assert session.rescued_clicks == 0 and not update.changed and not session.mask.any()


def test_voxels_under_a_scribble_take_its_side(worker):
    """Even a model that ignores every prompt: a scribble's voxels follow it, protected ones excepted."""
    from segmentai_core.interaction.prompts import polyline_samples

    image, truth = _phantom(oblique=True)
    session = InteractionSession(_IgnoresPrompts(), worker=worker)
    session.set_image(image)
    centre = _centre_ijk(truth.array)
    stroke = np.array([centre + [-5.0, 0.0, 0.0], centre + [5.0, 2.0, 0.0]])
    under = tuple(np.unique(image.geometry.ijk_to_array_index(polyline_samples(stroke, 0.5)), axis=0).T)
    protected = np.zeros(truth.array.shape, dtype=np.uint8)
    protected[under[0][:3], under[1][:3], under[2][:3]] = 1  # the first three voxels belong to another segment
    session.set_target(None, protected=protected)
    session.add_scribble(stroke, True, space="ijk")
    assert session.mask[under][3:].all() and not session.mask[under][:3].any()
    assert int(session.mask.sum()) == len(under[0]) - 3  # the stroke only: the predictor ignored it
    session.set_target(truth.array)
    session.add_scribble(stroke, False, space="ijk")
    assert not session.mask[under].any()
    session.undo()
    np.testing.assert_array_equal(session.mask, (truth.array > 0).astype(np.uint8))
