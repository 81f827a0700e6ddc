"""The boundary redraw on the crop's voxels (``HybridPredictor.refine_on_crop``): its band is an
erosion equal to the distance-transform rule, and a crop larger than ``refine_max_voxels`` is
redrawn on a coarser grid over the same extent (``session._refine_grid``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segmentai_core.geometry import Geometry
from segmentai_core.interaction.hybrid import _deeper_than
from segmentai_core.interaction.session import _refine_grid
from segmentai_core.phantoms import rotation_matrix


@pytest.mark.parametrize("sampling, depth", [((1.0, 1.0, 1.0), 2.1), ((2.5, 1.0, 1.0), 2.1),
                                             ((1.0, 0.7, 0.7), 3.0), ((0.5, 0.5, 0.5), 6.0)])
def test_band_erosion_equals_the_distance_transform_rule(sampling, depth):
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((40, 44, 36)), 3) > 0.5  # blobs, some touching the border
    mask[:, :, -4:] = True  # and a slab on the array's edge (beyond it counts as inside)
    sampling = np.asarray(sampling)
    expected = mask & (ndimage.distance_transform_edt(mask, sampling=sampling) > depth)
    np.testing.assert_array_equal(_deeper_than(mask, depth, sampling), expected)
    np.testing.assert_array_equal(_deeper_than(~mask, depth, sampling),
                                  ~mask & (ndimage.distance_transform_edt(~mask, sampling=sampling) > depth))


def test_a_large_crop_is_redrawn_on_a_coarser_grid_over_the_same_extent():
    crop = Geometry.create((180, 218, 182), (1.0, 0.9, 1.1), (10.0, -5.0, 3.0), rotation_matrix((0.2, 1.0, 0.4), 0.5))
    working = Geometry.create((96, 96, 96), (2.1, 2.1, 2.1))
    assert _refine_grid(crop, working, None) is crop
    assert _refine_grid(crop, working, 10**8) is crop
    grid = _refine_grid(crop, working, 1_500_000)
    assert grid is not None and grid is not crop
    assert 1_200_000 <= np.prod(grid.shape) <= 1_600_000  # above the budget where an axis met the 0.85 cap
    assert max(grid.spacing) <= 0.85 * 2.1 + 1e-9 and min(grid.spacing) > max(crop.spacing)
    # The same physical box, voxel edge to voxel edge, and the same axes.
    edge = np.asarray(crop.spacing) * np.asarray(crop.size_ijk)
    np.testing.assert_allclose(np.asarray(grid.spacing) * np.asarray(grid.size_ijk), edge)
    np.testing.assert_allclose(grid.ijk_to_lps(np.full((1, 3), -0.5)), crop.ijk_to_lps(np.full((1, 3), -0.5)))
    np.testing.assert_allclose(grid.direction_matrix, crop.direction_matrix)
    # A small budget: coarsened only to 0.85 of the working grid's spacing, where the redraw still adds detail.
    small = _refine_grid(crop, working, 200_000)
    np.testing.assert_allclose(max(small.spacing), 0.85 * 2.1, rtol=0.02)
    # A crop no finer than the working grid: the working grid's answer stands.
    assert _refine_grid(Geometry.create((64, 64, 64), (2.0, 2.0, 2.0)), working, None) is None
