"""Auto zoom-out: an object larger than the first view is predicted again in wider, coarser views."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.geometry import Geometry
from segmentai_core.interaction import InteractionSession, InteractionWorker
from segmentai_core.interaction.predictors import PERCENTILE_NORMALIZATION, WorkingInputs
from segmentai_core.interaction.region import RegionSettings, beyond_image, touches_open_border
from segmentai_core.metrics import dice
from segmentai_core.phantoms import rotation_matrix
from segmentai_core.volume import Volume


class ThresholdPredictor:
    """An interactive predictor (the session's Predictor interface) that answers 'bright = object' on
    whatever view it is given: what it sees decides the answer, so the view's extent is observable."""

    name = "threshold"
    normalization = dict(PERCENTILE_NORMALIZATION)
    sigma = 1.0

    def __init__(self) -> None:
        self.settings = RegionSettings(spacing_mm=1.0, max_size=32, size_multiple=8, margin_mm=4.0,
                                       min_extent_mm=24.0, max_zoom=4.0)
        self.spacings = []

    def load(self) -> None:
        pass

    def predict(self, inputs: WorkingInputs) -> np.ndarray:
        self.spacings.append(inputs.spacing_mm)
        return (inputs.image > 0.5).astype(np.float32)


def _ball_volume(radius_mm: float = 36.0, direction=np.eye(3)) -> tuple:
    geometry = Geometry.create((96, 100, 104), (1.0, 1.0, 1.0), (-50.0, -50.0, -50.0), direction)
    k, j, i = np.indices(geometry.shape)
    lps = geometry.ijk_to_lps(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float))
    ball = (np.linalg.norm(lps - geometry.ijk_to_lps(np.array([[52.0, 50.0, 48.0]]))[0], axis=1) <= radius_mm)
    ball = ball.reshape(geometry.shape)
    rng = np.random.default_rng(0)
    image = np.where(ball, 100.0, 10.0) + rng.normal(0, 2.0, ball.shape)
    return Volume(image.astype(np.float32), geometry), ball


@pytest.fixture(scope="module")
def worker():
    with InteractionWorker(threads=1) as shared:
        yield shared


@pytest.mark.parametrize("oblique", [False, True])
def test_large_object_is_seen_whole_after_zooming_out(worker, oblique):
    direction = rotation_matrix((0.3, 1.0, 0.2), 0.5) if oblique else np.eye(3)
    image, ball = _ball_volume(direction=direction)
    results = {}
    for passes in (0, 3):
        predictor = ThresholdPredictor()
        session = InteractionSession(predictor, worker=worker, zoom_out_passes=passes)
        session.set_image(image)
        session.add_point((52, 50, 48), True, space="ijk")
        results[passes] = (dice(session.mask, ball), predictor.spacings, session.zoomed_out)
    plain, zoomed = results[0], results[3]
    assert plain[1] == [1.0] and plain[2] == 0
    # Each pass widens the view 1.5 times (coarser spacing) until the ball no longer reaches its edge.
    assert zoomed[2] >= 2 and zoomed[1] == sorted(zoomed[1]) and zoomed[1][-1] > 2.0
    assert plain[0] < 0.3 < 0.9 < zoomed[0]


def test_small_object_is_not_zoomed(worker):
    image, ball = _ball_volume(radius_mm=6.0)
    predictor = ThresholdPredictor()
    session = InteractionSession(predictor, worker=worker, zoom_out_passes=3)
    session.set_image(image)
    session.add_point((52, 50, 48), True, space="ijk")
    assert session.zoomed_out == 0 and predictor.spacings == [1.0]
    assert dice(session.mask, ball) > 0.9


def test_a_face_outside_the_image_does_not_count():
    image = Geometry.create((20, 20, 20), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    # A working grid hanging 8 mm over the image's low-i edge.
    working = Geometry.create((16, 16, 16), (1.0, 1.0, 1.0), (-8.0, 2.0, 2.0))
    probability = np.zeros((16, 16, 16), dtype=np.float32)
    probability[4:12, 4:12, 0:6] = 1.0  # reaches the i = 0 face, which lies outside the image
    assert not touches_open_border(probability, working, image)
    probability[4:12, 4:12, 10:16] = 1.0  # reaches the high-i face, inside the image
    assert touches_open_border(probability, working, image)


def test_beyond_image_marks_working_voxels_outside_an_oblique_anisotropic_image():
    image = Geometry.create((12, 20, 16), (0.8, 1.1, 3.0), (5.0, -7.0, 2.0), rotation_matrix([0.2, 1.0, 0.4], 0.5))
    working = Geometry.create((24, 22, 26), (1.5, 1.5, 1.5), (-4.0, -16.0, -9.0), rotation_matrix([1.0, 0.1, 0.3], 0.3))
    beyond = beyond_image(image, working)
    assert beyond.shape == working.shape and beyond.any() and not beyond.all()
    kji = np.argwhere(np.ones(working.shape, dtype=bool))
    ijk = image.lps_to_ijk(working.ijk_to_lps(kji[:, ::-1].astype(float)))
    outside = np.any((ijk < -0.5) | (ijk > np.array(image.size_ijk) - 0.5), axis=1)
    np.testing.assert_array_equal(beyond.ravel(), outside)
