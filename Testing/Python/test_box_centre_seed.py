"""A box's object seed (its centre) is retracted by a negative click at that centre: the user says the
centre is not the object (a hollow or curved object's box)."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.geometry import Geometry
from segmentai_core.interaction import InteractionSession, InteractionWorker
from segmentai_core.interaction.hybrid import HybridPredictor
from segmentai_core.interaction.prompts import Prompt, box_prompts, centre_retracted
from segmentai_core.volume import Volume

BOX = Prompt("box", ((10.0, 10.0, 10.0), (30.0, 50.0, 20.0)), True)  # centre (20, 30, 15), half (10, 20, 5)


def _click(ijk, positive=False) -> Prompt:
    return Prompt("point", (tuple(float(v) for v in ijk),), positive)


@pytest.mark.parametrize("later, retracted", [
    ([], False),
    ([_click((20, 30, 15))], True),  # at the centre
    ([_click((20.9, 31.9, 15.4))], True),  # within a tenth of the half-extent (1, 2, 0.5 -> at least 1)
    ([_click((22, 30, 15))], False),  # beside it: a correction of the box's answer, not of its seed
    ([_click((20, 30, 15), positive=True)], False),  # a positive click never retracts it
])
def test_a_negative_click_at_the_box_centre_retracts_its_seed(later, retracted):
    assert centre_retracted(BOX, later) == retracted
    points = [p for p in box_prompts(BOX, later) if p.kind == "point"]
    assert len(points) == (0 if retracted else 1)


def test_a_two_dimensional_box_keeps_its_outline_when_the_centre_goes():
    flat = Prompt("box", ((10.0, 10.0, 15.0), (30.0, 50.0, 15.0)), True)
    kinds = [p.kind for p in box_prompts(flat, [_click((20, 30, 15))])]
    assert kinds == ["scribble"]


def test_a_session_drops_the_blob_of_a_hollow_objects_box_centre():
    # A bright ring (a shell's section, through every slice) around a dark core: the box's centre seed
    # lies in the core, which the box alone then segments; a negative click there takes it back.
    shape = (12, 48, 48)
    j, i = np.mgrid[0:48, 0:48]
    radius = np.hypot(j - 24, i - 24)
    ring = (radius >= 14) & (radius <= 18)
    array = np.broadcast_to(np.where(ring, 1.0, 0.2), shape).astype(np.float32).copy()
    image = Volume(array, Geometry.create(shape, (1.0, 1.0, 1.0)))
    with InteractionWorker(threads=1) as worker, InteractionSession(HybridPredictor(None), worker=worker) as session:
        session.set_image(image)
        session.set_roi((0, 0, 0), (47, 47, 11), space="ijk")
        session.add_box((5, 5, 0), (43, 43, 11), space="ijk")
        assert session.mask.astype(bool)[3:9, 24, 24].all()  # the box gave the core (its centre)
        assert not session.mask.astype(bool)[6, 24, 40]  # not the ring
        session.add_point((24, 24, 5.5), False, space="ijk")
        assert not session.mask.astype(bool)[:, 20:29, 20:29].any()  # the core is gone
