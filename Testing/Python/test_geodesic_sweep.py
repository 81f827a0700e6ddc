"""The geodesic sweep over flat plane runs (``geodesic._axis_steps``/``_sweep``) computes what a sweep
over 2D windows of each plane computes, to the bit: a shift of the flat index that wraps from one row
into the next is no step, and the distances of two threads side by side equal those of one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segmentai_core.interaction import geodesic
from segmentai_core.interaction.geodesic import competition, edge_costs, geodesic_distance


def _window_distance(init: np.ndarray, costs: geodesic.StepCosts, passes: int = 3) -> np.ndarray:
    """The reference: each step a strided 2D window of the plane, the steps in the same order."""
    distance = np.array(init, dtype=np.float32, copy=True)
    for _ in range(passes):
        for axis in range(3):
            if distance.shape[axis] < 2:
                continue
            d = np.moveaxis(distance, axis, 0)
            steps = []
            for offset, cost in costs.items():
                if offset[axis] != 1 or any(offset[a] for a in range(axis)):
                    continue
                in_plane = tuple(offset[a] for a in range(3) if a != axis)
                start, end = geodesic._pair((0,) + in_plane, d.shape)
                steps.append((start[1:], end[1:], np.moveaxis(cost, axis, 0)))
            for n in range(1, d.shape[0]):
                for start, end, c in steps:
                    d[n][end] = np.minimum(d[n][end], d[n - 1][start] + c[n - 1])
            for n in range(d.shape[0] - 2, -1, -1):
                for start, end, c in steps:
                    d[n][start] = np.minimum(d[n][start], d[n + 1][end] + c[n])
    return distance


@pytest.mark.parametrize("shape", [(7, 5, 4), (3, 9, 2), (1, 6, 8), (6, 1, 5), (4, 6, 1), (12, 11, 13)])
@pytest.mark.parametrize("neighbourhood", [6, 26])
def test_flat_runs_equal_2d_windows_to_the_bit(shape, neighbourhood):
    rng = np.random.default_rng(sum(shape) + neighbourhood)
    image = (rng.random(shape) * 10).astype(np.float32)
    costs = edge_costs(image, (1.3, 0.8, 0.6), contrast=1.0, length=0.01, neighbourhood=neighbourhood)
    init = np.full(shape, np.inf, dtype=np.float32)
    # Sources at the ends of rows: a wrapped shift would carry them to the next row's start.
    init[0, 0, -1] = 0.0
    init[tuple(n - 1 for n in shape[:2]) + (0,)] = 0.5
    np.testing.assert_array_equal(geodesic_distance(init, costs), _window_distance(init, costs))


def test_a_wrapped_shift_is_no_step():
    """Two voxels next to each other in memory but at opposite ends of adjacent rows are 3 columns apart."""
    image = np.zeros((1, 2, 4), dtype=np.float32)
    costs = edge_costs(image, contrast=0.0, length=1.0, neighbourhood=26)
    init = np.full(image.shape, np.inf, dtype=np.float32)
    init[0, 0, 3] = 0.0  # the end of row 0; flat index 3, next to flat index 4 = (row 1, column 0)
    distance = geodesic_distance(init, costs)
    assert distance[0, 1, 0] == pytest.approx(2.0 + np.sqrt(2.0), rel=1e-6)  # a diagonal and 2 face steps, not 1


def test_threaded_competition_equals_the_sequential_one(monkeypatch):
    rng = np.random.default_rng(5)
    image = ndimage.gaussian_filter(rng.random((40, 36, 34)).astype(np.float32), 1.5) * 10
    costs = edge_costs(image, (1.0, 1.0, 1.0), 1.0, 0.002, neighbourhood=26)
    object_costs = geodesic.with_voxel_cost(costs, image * 0.1)
    fg = np.full(image.shape, np.inf, dtype=np.float32)
    fg[20, 18, 17] = 0.0
    bg = np.full(image.shape, np.inf, dtype=np.float32)
    bg[0] = 0.0
    assert image.size >= geodesic.PARALLEL_MIN_VOXELS
    threaded = competition(fg, bg, costs, 3, object_costs)
    monkeypatch.setattr(geodesic, "PARALLEL_MIN_VOXELS", image.size + 1)
    np.testing.assert_array_equal(threaded, competition(fg, bg, costs, 3, object_costs))
