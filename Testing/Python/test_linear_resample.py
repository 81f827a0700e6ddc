"""Linear resampling between axis-parallel grids gives what SimpleITK's resampler gives."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.geometry import Geometry
from segmentai_core.inference.canonical import _sitk_resample, canonical_geometry, resample_to
from segmentai_core.inference.linear_resample import resample_linear_axis_parallel
from segmentai_core.volume import Volume

SOURCE = Geometry.create((9, 30, 25), (0.7, 0.9, 5.0), (3.0, 4.0, 5.0), np.diag([-1.0, 1.0, -1.0]))


def _itk(volume: Volume, target: Geometry, default: float) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(_sitk_resample(volume.to_sitk(), target, sitk.sitkLinear, default))


@pytest.mark.parametrize("orientation,spacing", [("RAS", (2.0, 2.0, 2.0)), ("PIL", (0.4, 1.3, 0.6)),
                                                 ("LPS", (0.7, 0.9, 5.0))])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_axis_parallel_resampling_equals_simpleitk(orientation, spacing, dtype):
    rng = np.random.default_rng(0)
    volume = Volume((rng.normal(size=SOURCE.shape) * 300).astype(dtype), SOURCE)
    canonical = canonical_geometry(SOURCE, orientation, spacing)
    # Reaching beyond the source on every side: edge values within half a voxel, the default beyond.
    target = Geometry.create(tuple(n + 4 for n in canonical.shape), canonical.spacing,
                             canonical.ijk_to_lps(np.array([-1.3, -0.7, -2.1])), canonical.direction_matrix)
    for grid in (canonical, target):
        ours = resample_linear_axis_parallel(volume.array, SOURCE, grid, -7.0)
        reference = _itk(volume, grid, -7.0)
        assert ours.dtype == np.float32 and ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-4)
        assert np.array_equal(ours == -7.0, reference == -7.0)


def test_oblique_grids_fall_back_to_simpleitk():
    c, s = np.cos(0.3), np.sin(0.3)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    oblique = Geometry.create((10, 12, 14), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), rotation)
    volume = Volume(np.arange(10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14), oblique)
    target = canonical_geometry(oblique, "RAS", (2.0, 2.0, 2.0))
    assert resample_linear_axis_parallel(volume.array, oblique, target) is None
    np.testing.assert_allclose(resample_to(volume, target, order=1).array, _itk(volume, target, 0.0), atol=1e-4)
