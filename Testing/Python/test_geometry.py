"""The geometry module: index ↔ LPS ↔ RAS conversions, grids, canonical resampling."""

import numpy as np
import pytest

from segmentai_core.geometry import Geometry, lps_to_ras, orientation_code, ras_to_lps
from segmentai_core.inference.canonical import canonical_geometry, orientation_direction, resample_to
from segmentai_core.phantoms import blob_phantom, rotation_matrix
from segmentai_core.volume import Volume

OBLIQUE = rotation_matrix([1, 2, 3], 0.5)


def oblique_geometry():
    return Geometry.create((20, 30, 40), (0.7, 1.3, 2.9), origin=(-12.5, 40.0, 3.25), direction=OBLIQUE)


def test_ijk_lps_round_trip_oblique_anisotropic():
    g = oblique_geometry()
    ijk = np.array([[0, 0, 0], [39, 29, 19], [3.5, 7.25, 11.0]])
    assert np.allclose(g.lps_to_ijk(g.ijk_to_lps(ijk)), ijk)
    assert np.allclose(g.ijk_to_lps([0, 0, 0]), g.origin)
    # One step along i moves spacing[0] mm along the first direction column.
    assert np.allclose(g.ijk_to_lps([1, 0, 0]) - g.origin, 0.7 * OBLIQUE[:, 0])


def test_ras_is_lps_with_x_and_y_flipped():
    g = oblique_geometry()
    point = np.array([1.0, 2.0, 3.0])
    assert np.allclose(lps_to_ras(point), [-1, -2, 3])
    assert np.allclose(ras_to_lps(lps_to_ras(point)), point)
    assert np.allclose(g.ijk_to_ras_matrix()[:3, :3], np.diag([-1, -1, 1]) @ g.ijk_to_lps_matrix()[:3, :3])
    assert np.allclose(g.ras_to_ijk(g.ijk_to_ras([5, 6, 7])), [5, 6, 7])


def test_sitk_round_trip_keeps_geometry():
    g = oblique_geometry()
    volume = Volume(np.arange(np.prod(g.shape), dtype=np.int16).reshape(g.shape), g)
    back = Volume.from_sitk(volume.to_sitk())
    assert back.geometry.same_grid(g, 1e-9)
    assert np.array_equal(back.array, volume.array)
    # ITK's own index→point agrees with ours: the array is [k, j, i].
    image = volume.to_sitk()
    assert np.allclose(image.TransformContinuousIndexToPhysicalPoint((3.0, 4.0, 5.0)), g.ijk_to_lps([3, 4, 5]))
    assert image.GetPixel(3, 4, 5) == volume.array[5, 4, 3]


def test_orientation_codes():
    assert orientation_code(np.eye(3)) == "LPS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0])) == "RAS"
    assert np.allclose(orientation_direction("RAS"), np.diag([-1.0, -1.0, 1.0]))
    assert orientation_code(orientation_direction("ASR")) == "ASR"
    with pytest.raises(ValueError):
        orientation_direction("RRS")


def test_invalid_geometry_rejected():
    with pytest.raises(ValueError):
        Geometry.create((2, 2, 2), spacing=(1, 0, 1))
    with pytest.raises(ValueError):
        Geometry.create((2, 2, 2), direction=np.ones((3, 3)))


def test_cropped_geometry_places_voxels_where_they_were():
    g = oblique_geometry()
    sub = g.cropped((2, 3, 4), (10, 20, 30))
    assert sub.shape == (8, 17, 26)
    assert np.allclose(sub.ijk_to_lps([0, 0, 0]), g.ijk_to_lps([4, 3, 2]))


def test_canonical_grid_does_not_depend_on_storage_order():
    image, _ = blob_phantom(shape=(12, 14, 16), spacing=(1.0, 1.5, 2.0), origin=(3, -4, 5))
    g = image.geometry
    # Same voxels stored with i and k swapped and j reversed.
    d = g.direction_matrix
    permuted = Geometry.create((16, 14, 12), (2.0, 1.5, 1.0), g.ijk_to_lps([0, 13, 0]),
                               np.stack([d[:, 2], -d[:, 1], d[:, 0]], axis=1))
    assert np.allclose(np.sort(g.corners_lps(), axis=0), np.sort(permuted.corners_lps(), axis=0))
    a = canonical_geometry(g, "RAS", (1.2, 1.2, 1.2))
    b = canonical_geometry(permuted, "RAS", (1.2, 1.2, 1.2))
    assert a.same_grid(b, 1e-9)


def test_canonical_resampling_is_exact_for_axis_aligned_input_at_target_spacing():
    image, _ = blob_phantom(shape=(10, 12, 14), spacing=(2.0, 2.0, 2.0), direction=np.diag([1.0, -1.0, 1.0]))
    canonical = canonical_geometry(image.geometry, "RAS", (2.0, 2.0, 2.0))
    moved = resample_to(image, canonical, order=1)
    assert moved.array.shape == image.array.shape
    # LPS→RAS on an (L, A, S) grid flips i only: pure reordering, no interpolation.
    assert np.allclose(moved.array, image.array[:, :, ::-1].astype(np.float32), atol=1e-4)
