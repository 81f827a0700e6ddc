"""The segment pipeline's shortcuts give exactly what the long way gives.

Each shortcut skips work whose result it can tell in advance (issue 18): the input's minimum when
the canonical grid never reaches outside the input, a full min/max pass when a sample already shows
two values, the label's bounding box before keep-largest on a one-label map, and one thread for
the source planes of a linear resampling.
"""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.errors import InputError
from segmentai_core.geometry import Geometry
from segmentai_core.inference import linear_resample
from segmentai_core.inference.canonical import canonical_geometry
from segmentai_core.inference.job import check_input
from segmentai_core.inference.postprocess import keep_largest_component, keep_largest_single_label
from segmentai_core.inference.preprocess import _within_field_of_view, prepare_input
from segmentai_core.volume import Volume

OBLIQUE = Geometry.create((40, 36, 30), (0.8, 0.9, 2.5), (10.0, -5.0, 3.0),
                          np.array([[np.cos(0.4), -np.sin(0.4), 0], [np.sin(0.4), np.cos(0.4), 0], [0, 0, 1]]))
AXIS_PARALLEL = Geometry.create((40, 36, 30), (0.8, 0.9, 2.5), (10.0, -5.0, 3.0), np.diag([-1.0, 1.0, -1.0]))


def test_the_canonical_grid_of_an_axis_parallel_scan_lies_inside_it_and_an_oblique_ones_does_not():
    assert _within_field_of_view(AXIS_PARALLEL, canonical_geometry(AXIS_PARALLEL, "RAS", (2.0, 2.0, 2.0)))
    assert not _within_field_of_view(OBLIQUE, canonical_geometry(OBLIQUE, "RAS", (2.0, 2.0, 2.0)))
    beyond = Geometry.create((40, 36, 31), AXIS_PARALLEL.spacing, AXIS_PARALLEL.origin, AXIS_PARALLEL.direction_matrix)
    assert not _within_field_of_view(AXIS_PARALLEL, beyond)  # one more slice, past the last one


def test_an_oblique_scan_still_gets_its_minimum_beyond_its_field_of_view():
    rng = np.random.default_rng(1)
    array = (rng.normal(size=OBLIQUE.shape) * 100 + 500).astype(np.int16)
    spec = {"orientation": "RAS", "target_spacing": [2.0, 2.0, 2.0], "normalization": {"type": "none"}}
    prepared = prepare_input(Volume(array, OBLIQUE), spec).array
    corner = prepared[0, 0, 0]  # outside the rotated scan
    assert corner == float(array.min())


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_constant_volumes_are_refused_and_near_constant_ones_are_not(dtype):
    grid = Geometry.create((100, 100, 100), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    array = np.full(grid.shape, 3, dtype=dtype)
    with pytest.raises(InputError, match="constant"):
        check_input(Volume(array.copy(), grid))
    array[17, 23, 41] = 4  # one voxel that the strided sample (every 2nd along each axis) does not see
    assert check_input(Volume(array, grid)) == []


def test_keep_largest_on_a_one_label_map_equals_the_general_function():
    rng = np.random.default_rng(2)
    labelmap = np.zeros((60, 50, 40), dtype=np.uint8)
    labelmap[5:50, 5:45, 5:35] = (rng.random((45, 40, 30)) > 0.55) * 7  # many pieces, some ties
    within = (slice(3, 52), slice(4, 47), slice(2, 38))
    expected = keep_largest_component(labelmap.copy(), [7], within=within)
    assert np.array_equal(keep_largest_single_label(labelmap.copy(), within), expected)
    assert len(np.unique(expected)) == 2 and expected.sum() < labelmap.sum()


def test_two_threads_over_the_source_planes_give_the_same_voxels(monkeypatch):
    rng = np.random.default_rng(3)
    source = Geometry.create((80, 40, 30), (0.7, 0.9, 1.1), (3.0, 4.0, 5.0), np.diag([1.0, -1.0, 1.0]))
    array = (rng.normal(size=source.shape) * 300).astype(np.int16)
    target = canonical_geometry(source, "PIL", (1.3, 0.5, 0.9))
    threaded = linear_resample.resample_linear_axis_parallel(array, source, target, -1.0)
    monkeypatch.setattr(linear_resample, "_PLANES_PER_THREAD", 10**9)
    single = linear_resample.resample_linear_axis_parallel(array, source, target, -1.0)
    assert np.array_equal(threaded, single)
