"""The thresholded resampling (``above_axis_parallel``) equals resampling then thresholding, to the voxel."""

import numpy as np
import pytest
from scipy import ndimage

from segmentai_core.geometry import Geometry
from segmentai_core.inference.linear_resample import above_axis_parallel, resample_linear_axis_parallel

PERMUTED = np.array([[0.0, 1, 0], [0, 0, -1], [-1, 0, 0]])  # axes swapped and flipped


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, 1, -1]), PERMUTED])
def test_above_equals_resampled_then_thresholded(seed: int, direction: np.ndarray) -> None:
    rng = np.random.default_rng(seed)
    source_shape = tuple(int(n) for n in rng.integers(8, 30, 3))
    source = Geometry.create(source_shape, tuple(rng.uniform(0.7, 3.0, 3)), tuple(rng.uniform(-5, 5, 3)), np.eye(3))
    soft = ndimage.gaussian_filter(rng.random(source_shape).astype(np.float32), 2.0)
    soft = ((soft - soft.min()) / np.ptp(soft)).astype(np.float32)
    soft[0, 0, :3] = 0.5  # exact ties at the threshold
    # A finer grid over the source's box and 1-2 mm beyond it (the default value there), centred on it.
    corners = source.corners_lps()
    centre, extent_lps = corners.mean(axis=0), np.ptp(corners, axis=0) + rng.uniform(2, 4)
    spacing = rng.uniform(0.4, 1.2, 3)
    extent_ijk = np.abs(direction.T) @ extent_lps  # along the target's own axes
    size_ijk = np.ceil(extent_ijk / spacing).astype(int) + 1
    origin = centre - direction @ ((size_ijk - 1) * spacing / 2)
    target = Geometry.create(tuple(size_ijk[::-1]), tuple(spacing), tuple(origin), direction)
    for default in (0.0, 1.0):
        expected = resample_linear_axis_parallel(soft, source, target, default_value=default)
        if expected is None:
            pytest.skip("oblique")
        got = above_axis_parallel(soft, source, target, 0.5, default_value=default)
        assert 0.05 < (expected > 0.5).mean() < 0.95  # both sides, a boundary between
        np.testing.assert_array_equal(got, expected > 0.5)


def test_uint8_mask_and_oblique() -> None:
    source = Geometry.create((10, 12, 14), (2.0, 1.5, 1.0), (0, 0, 0), np.eye(3))
    mask = np.zeros((10, 12, 14), dtype=np.uint8)
    mask[3:7, 2:9, 4:12] = 1
    target = Geometry.create((25, 20, 17), (0.7, 0.9, 0.8), (-1, 0.5, 0.2), np.eye(3))
    np.testing.assert_array_equal(above_axis_parallel(mask, source, target, 0.5),
                                  resample_linear_axis_parallel(mask, source, target) > 0.5)
    tilted = Geometry.create((10, 12, 14), (1, 1, 1), (0, 0, 0),
                             np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]]))
    assert above_axis_parallel(mask, source, tilted, 0.5) is None
