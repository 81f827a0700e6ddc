"""The geodesic competition's neighbourhood: 26 neighbours follow thin diagonal structures (as Slicer's
Grow-from-seeds does), and the hybrid falls back to the 6 face neighbours where diagonal steps leak."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.interaction.geodesic import competition, edge_costs, geodesic_distance
from segmentai_core.interaction.hybrid import HybridPredictor, _gradient_magnitude

INF = np.float32(np.inf)


def _diagonal_line(shape=(1, 24, 24)) -> np.ndarray:
    """A bright line one voxel wide running diagonally across a dark slice (8-connected only)."""
    image = np.zeros(shape, dtype=np.float32)
    n = np.arange(min(shape[1:]))
    image[0, n, n] = 1.0
    return image


@pytest.mark.parametrize("neighbourhood, owns_far_end", [(6, False), (26, True)])
def test_only_diagonal_steps_follow_a_thin_diagonal_line(neighbourhood, owns_far_end):
    image = _diagonal_line()
    fg = np.full(image.shape, INF, dtype=np.float32)
    bg = fg.copy()
    fg[0, 0, 0] = 0  # an object click at one end of the line
    bg[0, 20, 3] = 0  # a background click in the dark beside its far half
    costs = edge_costs(image, contrast=1.0, length=0.001, neighbourhood=neighbourhood)
    soft = competition(fg, bg, costs)
    line = soft[0, np.arange(24), np.arange(24)]
    assert (line[-4:] > 0.5).all() == owns_far_end  # with face steps the line's far end costs two edges


def test_26_neighbour_distance_of_a_flat_image_is_the_chessboard_length():
    # With no intensity change a path costs only its length: a diagonal step sqrt(2) (or sqrt(3)) mm.
    init = np.full((5, 5, 5), INF, dtype=np.float32)
    init[0, 0, 0] = 0
    costs = edge_costs(np.zeros((5, 5, 5), np.float32), contrast=0.0, length=1.0, neighbourhood=26)
    distance = geodesic_distance(init, costs)
    assert distance[4, 4, 4] == pytest.approx(4 * np.sqrt(3), rel=1e-5)
    assert distance[0, 4, 4] == pytest.approx(4 * np.sqrt(2), rel=1e-5)
    six = geodesic_distance(init, edge_costs(np.zeros((5, 5, 5), np.float32), contrast=0.0, length=1.0,
                                             neighbourhood=6))
    assert six[4, 4, 4] == pytest.approx(12.0)


def test_unknown_neighbourhood_is_refused():
    with pytest.raises(ValueError, match="neighbourhood"):
        edge_costs(np.zeros((3, 3, 3), np.float32), neighbourhood=18)


def _wall_with_diagonal_gaps(shape=(12, 12, 60)) -> np.ndarray:
    """Dark on both sides of a bright wall two planes thick (i = 20, 21) whose dark cells alternate
    between the planes: a 26-connected path crosses it diagonally, no 6-connected path does."""
    image = np.zeros(shape, dtype=np.float32)
    k, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    image[:, :, 20] = ((k + j) % 2 == 1).astype(np.float32)
    image[:, :, 21] = ((k + j) % 2 == 0).astype(np.float32)
    return image


def _geodesic_answer(predictor: HybridPredictor, image: np.ndarray, fg, bg, shell):
    """The predictor's geodesic answer on 1 mm voxels, with no ROI edge and no region term."""
    spacing = (1.0, 1.0, 1.0)
    return predictor._geodesic_answer(image, spacing, fg, bg, shell, np.zeros(image.shape, dtype=bool),
                                      lambda: _gradient_magnitude(image, spacing), lambda: None)


def test_the_hybrid_takes_the_face_neighbour_answer_where_diagonal_steps_leak():
    image = _wall_with_diagonal_gaps()
    fg = np.full(image.shape, INF, dtype=np.float32)
    bg = fg.copy()
    fg[6, 6, 10] = 0  # the object click, before the wall
    bg[:, :, 59] = 0  # the background far behind it
    shell = np.zeros(image.shape, dtype=bool)
    shell[:, :, 30] = True  # the ROI's edge, behind the wall (nearer the click than the background seeds)
    both = HybridPredictor(None, region_weight=0.0)
    answer, leaked = _geodesic_answer(both, image, fg, bg, shell)
    assert leaked == 0.0 and (answer[:, :, :20] > 0.5).all() and not (answer[:, :, 22:] > 0.5).any()
    only_26 = HybridPredictor(None, region_weight=0.0, fallback_neighbourhood=None)
    answer, leaked = _geodesic_answer(only_26, image, fg, bg, shell)
    assert leaked == 1.0  # through the gaps: the whole shell behind the wall
