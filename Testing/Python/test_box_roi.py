"""A 3D box prompt is the region of interest of the interactions after it (``InteractionSession._view_roi``).

What the interactive benchmark measured with an explicit ROI around each box is what a user who draws
a box gets: the same masks, the ROI widened by a later click beyond it, and taken back by undo.
"""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.geometry import Geometry
from segmentai_core.interaction import InteractionSession, InteractionWorker
from segmentai_core.interaction.hybrid import HybridPredictor
from segmentai_core.interaction.session import BOX_ROI_MARGIN_MM
from segmentai_core.volume import Volume


@pytest.fixture(scope="module")
def worker():
    with InteractionWorker(threads=2) as shared:
        yield shared


def _image():
    """Two bright blobs in noise on 1 × 1.5 × 2 mm voxels: the box is drawn around the first."""
    rng = np.random.default_rng(5)
    shape = (36, 50, 64)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    first = ((k - 16) / 8) ** 2 + ((j - 22) / 10) ** 2 + ((i - 20) / 12) ** 2 <= 1
    second = ((k - 18) / 7) ** 2 + ((j - 24) / 8) ** 2 + ((i - 48) / 9) ** 2 <= 1
    array = np.where(first | second, 0.8, 0.3) + rng.normal(0, 0.04, shape)
    return Volume(array.astype(np.float32), Geometry.create(shape, (1.0, 1.5, 2.0), (0.0, 0.0, 0.0))), first, second


BOX = ((7, 11, 7), (33, 33, 25))  # (i, j, k) corners around the first blob
INSIDE_CLICKS = [((20, 22, 16), True), ((30, 30, 22), False)]


def _run(session, prompts):
    masks = []
    for prompt in prompts:
        if prompt[0] == "box":
            session.add_box(*prompt[1], space="ijk")
        else:
            session.add_point(prompt[1], prompt[2], space="ijk")
        masks.append(session.mask.copy())
    return masks


def test_box_then_clicks_equal_the_box_with_its_roi_set(worker):
    image, _, _ = _image()
    prompts = [("box", BOX)] + [("point", ijk, positive) for ijk, positive in INSIDE_CLICKS]
    with InteractionSession(HybridPredictor(), worker=worker) as session:
        session.set_image(image)
        by_the_box = _run(session, prompts)
    margin = np.ceil(BOX_ROI_MARGIN_MM / np.array(image.geometry.spacing))
    # The former way (the benchmark's until 2026-12-07): the ROI set explicitly, the box a prompt only.
    with InteractionSession(HybridPredictor(), worker=worker, box_roi_margin_mm=None) as session:
        session.set_image(image)
        session.set_roi(np.array(BOX[0]) - margin, np.array(BOX[1]) + margin, space="ijk")
        with_roi_set = _run(session, prompts)
    assert by_the_box[0].any()
    for a, b in zip(by_the_box, with_roi_set):
        assert np.array_equal(a, b)


def test_a_click_beyond_the_box_widens_its_roi_and_undo_takes_it_back(worker):
    image, first, second = _image()
    with InteractionSession(HybridPredictor(), worker=worker) as session:
        session.set_image(image)
        session.add_box(*BOX, space="ijk")
        box_roi = session._view_roi(session.prompts)
        assert not (session.mask.astype(bool) & second).any()
        session.add_point((48, 24, 18), True, space="ijk")  # the second blob, beyond the box
        wider = session._view_roi(session.prompts)
        assert np.all(wider[0] <= box_roi[0]) and np.all(wider[1] >= box_roi[1]) and wider[1][0] >= 48
        assert (session.mask.astype(bool) & second).sum() > 0.5 * second.sum()
        session.undo()
        assert all(np.array_equal(a, b) for a, b in zip(session._view_roi(session.prompts), box_roi))
        session.undo()
        assert session._view_roi(session.prompts) is None  # no box, no ROI set


def test_without_the_rule_a_box_bounds_only_its_own_change(worker):
    image, _, _ = _image()
    with InteractionSession(HybridPredictor(), worker=worker, box_roi_margin_mm=None) as session:
        session.set_image(image)
        session.add_box(*BOX, space="ijk")
        assert session._view_roi(session.prompts) is None
    with InteractionSession(HybridPredictor(), worker=worker) as session:
        session.set_image(image)
        session.add_box((7, 11, 16), (33, 33, 16.2), space="ijk")  # flat: a 2D box on one slice
        assert session._view_roi(session.prompts) is None
