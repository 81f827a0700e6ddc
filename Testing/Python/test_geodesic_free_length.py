"""The hybrid's geodesic answer without the length term: taken for a thin, long object whose boundary
lies on strong edges (a skull's bone around the brain), which the length term cuts short."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.interaction.hybrid import HybridPredictor
from segmentai_core.interaction.predictors import WorkingInputs

N = 64
CENTRE = (N - 1) / 2


def _skull_phantom(spacing_mm: float = 8.0):
    """A bright shell 3 voxels thick (radius 26-29 voxels: 210-230 mm) round a dimmer inside, in the
    dark; an object click in the shell's top, a background click at the centre, the grid's border
    outside the ROI."""
    z, y, x = np.mgrid[:N, :N, :N] - CENTRE
    radius = np.sqrt(z * z + y * y + x * x)
    shell = (radius >= 26) & (radius < 29)
    image = np.where(shell, 1.0, np.where(radius < 26, 0.3, 0.0)).astype(np.float32)
    image += np.random.default_rng(0).normal(0, 0.02, image.shape).astype(np.float32)
    positive = np.zeros(image.shape, np.float32)
    positive[3:6, 30:33, 30:33] = 1  # the shell's top (k = 3..5 lies at radius 26.5-28.5)
    negative = np.zeros(image.shape, np.float32)
    negative[30:33, 30:33, 30:33] = 1
    outside = np.ones(image.shape, dtype=bool)
    outside[1:-1, 1:-1, 1:-1] = False
    inputs = WorkingInputs(image, np.zeros_like(image), positive, negative, spacing_mm, outside, None, True)
    return inputs, shell


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("margin, least_dice", [(1.1, 0.95), (None, 0.0)])
def test_the_whole_shell_is_reached_only_without_the_length_term(margin, least_dice):
    inputs, shell = _skull_phantom()
    predictor = HybridPredictor(None, free_length_margin=margin)
    answer = predictor.predict(inputs) > 0.5
    far_pole = answer[int(CENTRE + 27.5), 31, 31]
    if margin is None:
        # The length term: the brain's straight paths beat the bone's 200 mm round the far side.
        assert not far_pole and _dice(answer, shell) < 0.5
        assert len(predictor.last_candidates) == 2  # the answer without the term is never computed
    else:
        assert far_pole and _dice(answer, shell) >= least_dice
        assert predictor.last_length == 0.0


def test_a_weak_edge_keeps_the_length_term():
    # The same shell, its inside as bright as the shell but for a faint step: the answer without the
    # length term draws its boundary across flat tissue (contrast 0.014 against 0.036 with the term;
    # with a margin of 0 it would be taken), so the answer with the term stands.
    inputs, shell = _skull_phantom()
    image = inputs.image.copy()
    z, y, x = np.mgrid[:N, :N, :N] - CENTRE
    image[np.sqrt(z * z + y * y + x * x) < 26] = 0.93
    inputs = WorkingInputs(image, inputs.previous, inputs.positive, inputs.negative, inputs.spacing_mm,
                           inputs.outside, None, True)
    predictor = HybridPredictor(None)
    predictor.predict(inputs)
    free = predictor.last_candidates[-1]
    assert free["length"] == 0.0  # it was weighed, and lost
    assert predictor.last_length == predictor.length_per_mm
