"""Distances kept between clicks, and a region of interest prepared ahead, change no answer.

The hybrid engine keeps each click's geodesic distances (``distance_memo``) and computes, when an
ROI is set, the background distances the first click will need (``HybridPredictor.prepare``). Both
only move work: every mask must equal the one an engine without them gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.geometry import Geometry
from segmentai_core.interaction import InteractionSession, InteractionWorker, ModelPredictor, find_interactive_model
from segmentai_core.interaction.distance_memo import DistanceMemo, digest
from segmentai_core.interaction.geodesic import edge_costs, geodesic_distance
from segmentai_core.interaction.hybrid import HybridPredictor
from segmentai_core.volume import Volume


@pytest.fixture(scope="module")
def worker():
    with InteractionWorker(threads=2) as shared:
        yield shared


def _phantom(seed: int = 0):
    """A bright ellipsoid and a fainter blob beside it, in noise, 2 × 1.5 × 1 mm voxels."""
    rng = np.random.default_rng(seed)
    shape = (40, 56, 60)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    truth = ((k - 20) / 11) ** 2 + ((j - 26) / 15) ** 2 + ((i - 28) / 17) ** 2 <= 1
    blob = ((k - 22) / 6) ** 2 + ((j - 44) / 6) ** 2 + ((i - 46) / 6) ** 2 <= 1
    array = np.where(truth, 0.8, np.where(blob, 0.6, 0.3)) + rng.normal(0, 0.05, shape)
    return Volume(array.astype(np.float32), Geometry.create(shape, (1.0, 1.5, 2.0), (3.0, -2.0, 1.0))), truth


def _roi(truth: np.ndarray):
    kji = np.argwhere(truth)
    return (kji.min(0) - 3).clip(0)[::-1], np.minimum(kji.max(0) + 3, np.array(truth.shape) - 1)[::-1]


def _masks(predictor, image, truth, worker, clicks):
    with InteractionSession(predictor, worker=worker) as session:
        session.set_image(image)
        session.set_roi(*_roi(truth), space="ijk")
        masks = []
        for ijk, positive in clicks:
            session.add_point(ijk, positive, space="ijk")
            masks.append(session.mask.copy())
        return masks


CLICKS = [((28, 26, 20), True), ((46, 44, 22), False), ((14, 20, 16), True), ((40, 30, 25), False)]


def _without_memo(predictor: HybridPredictor) -> HybridPredictor:
    predictor._distances = DistanceMemo(entries=0)  # keeps nothing: every distance computed anew
    predictor.prepare = None  # the session then prepares nothing
    return predictor


@pytest.mark.parametrize("with_model", [False, True], ids=["geodesic", "hybrid"])
def test_memo_and_prepared_roi_change_no_mask(worker, with_model):
    image, truth = _phantom()

    def engine() -> HybridPredictor:
        if not with_model:
            return HybridPredictor()
        model = ModelPredictor(find_interactive_model(), device="cpu", flips=0)
        worker.call(model.load)
        return HybridPredictor(model)

    remembering = engine()
    with_memo = _masks(remembering, image, truth, worker, CLICKS)
    fresh = _masks(_without_memo(engine()), image, truth, worker, CLICKS)
    assert remembering._distances.hits > 0
    for n, (a, b) in enumerate(zip(with_memo, fresh)):
        assert np.array_equal(a, b), f"click {n + 1}"
    assert with_memo[0].any()


def test_first_click_uses_the_prepared_background(worker):
    image, truth = _phantom()
    predictor = HybridPredictor()
    with InteractionSession(predictor, worker=worker) as session:
        session.set_image(image)
        session.set_roi(*_roi(truth), space="ijk")
        session._preparing.result()
        prepared = predictor._distances.misses
        assert prepared == len(predictor._geodesic_specs())  # the background of each competition
        session.add_point(CLICKS[0][0], True, space="ijk")
        assert predictor._distances.hits >= prepared  # all found at the first (positive) click


def test_a_new_image_during_preparation_is_not_mixed_with_the_old(worker):
    image, truth = _phantom(0)
    other, _ = _phantom(1)
    other = Volume(np.ascontiguousarray(other.array[:, :, ::-1]), other.geometry)  # same grid, other values
    predictor = HybridPredictor()
    with InteractionSession(predictor, worker=worker) as session:
        session.set_image(image)
        session.set_roi(*_roi(truth), space="ijk")
        session.set_image(other)  # at once, while the ROI of the first image is being prepared
        session.set_roi(*_roi(truth), space="ijk")
        session.add_point(CLICKS[0][0], True, space="ijk")
        got = session.mask.copy()
    expected = _masks(_without_memo(HybridPredictor()), other, truth, worker, CLICKS[:1])[0]
    assert np.array_equal(got, expected)


def test_memo_returns_what_a_new_computation_gives_and_forgets_the_oldest():
    rng = np.random.default_rng(3)
    image = rng.random((12, 14, 16)).astype(np.float32)
    costs = edge_costs(image, (1.0, 1.0, 1.0), 1.0, 0.01, neighbourhood=26)
    init = np.full(image.shape, np.inf, dtype=np.float32)
    init[6, 7, 8] = 0
    memo = DistanceMemo(entries=2)
    key = ("object", digest(init))
    first = memo.distances([(key, init, lambda: costs)], passes=3)[key]
    again = memo.distances([(key, init, lambda: pytest.fail("computed again"))], passes=3)[key]
    assert again is first and not first.flags.writeable
    np.testing.assert_array_equal(first, geodesic_distance(init, costs, 3))
    assert (memo.hits, memo.misses) == (1, 1)
    for n in range(2):  # two newer entries push the first out
        other = init.copy()
        other[n, 0, 0] = 0
        memo.distances([(("object", digest(other)), other, lambda: costs)], passes=3)
    memo.distances([(key, init, lambda: costs)], passes=3)
    assert memo.misses == 4
    assert digest(init) != digest(init.astype(np.float64)) and digest(None) is None
