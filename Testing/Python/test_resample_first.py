"""TotalSegmentator's round trip (``inference/resample_first``): nibabel's closest-RAS order, scipy's zoom, and back."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.geometry import Geometry
from segmentai_core.inference.resample_first import to_working_grid
from segmentai_core.volume import Volume


def _direction(permutation, signs, degrees=0.0) -> np.ndarray:
    """Columns: the i, j, k unit vectors in LPS, permuted, signed and turned about z."""
    base = np.zeros((3, 3))
    for column, (row, sign) in enumerate(zip(permutation, signs)):
        base[row, column] = sign
    a = np.radians(degrees)
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return turn @ base


DIRECTIONS = {
    "LPS": _direction((0, 1, 2), (1, 1, 1)),
    "RAS": _direction((0, 1, 2), (-1, -1, 1)),
    "permuted": _direction((2, 0, 1), (1, -1, -1)),
    "oblique": _direction((1, 2, 0), (-1, 1, 1), degrees=20.0),
}


def _volume(direction, spacing=(3.0, 3.0, 3.0), shape=(7, 9, 11)) -> Volume:
    array = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    return Volume(array, Geometry.create(shape, spacing=spacing, origin=(4.0, -2.0, 9.0), direction=direction))


def _nibabel_canonical(volume: Volume):
    """``nibabel.as_closest_canonical`` (TotalSegmentator's reordering) of ``volume``: array and zooms
    in (k, j, i) order."""
    nib = pytest.importorskip("nibabel")
    image = nib.Nifti1Image(np.transpose(volume.array, (2, 1, 0)), volume.geometry.ijk_to_ras_matrix())
    canonical = nib.as_closest_canonical(image)
    array = np.transpose(np.asarray(canonical.dataobj), (2, 1, 0))  # nibabel's (i, j, k) → (k, j, i)
    return array, tuple(float(z) for z in canonical.header.get_zooms()[::-1])


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_order_is_nibabels_closest_canonical(name):
    volume = _volume(DIRECTIONS[name], spacing=(2.0, 2.0, 2.0))
    grid = to_working_grid(volume, 2.0)
    expected, _ = _nibabel_canonical(volume)
    assert not grid.resampled
    assert np.array_equal(grid.volume.array, expected)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_spacing_follows_the_reordered_axes(name):
    volume = _volume(DIRECTIONS[name], spacing=(1.5, 2.0, 3.0))
    grid = to_working_grid(volume, 1.5)
    expected, zooms_kji = _nibabel_canonical(volume)
    assert grid.reordered_shape == expected.shape
    assert tuple(np.asarray(volume.geometry.spacing_kji)[list(grid.perm)]) == pytest.approx(zooms_kji, abs=1e-5)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_same_spacing_is_not_resampled_and_labels_come_back_exactly(name):
    volume = _volume(DIRECTIONS[name])
    grid = to_working_grid(volume, 3.0)
    assert not grid.resampled
    assert grid.volume.geometry.spacing == (3.0, 3.0, 3.0)
    assert np.array_equal(grid.labels_back(grid.volume.array), volume.array)


def test_resampling_is_linear_to_the_spacing_and_labels_return_to_the_input_grid():
    volume = _volume(DIRECTIONS["permuted"], spacing=(1.0, 1.5, 6.0), shape=(6, 10, 12))
    grid = to_working_grid(volume, 3.0)
    assert grid.resampled and grid.volume.array.dtype == np.int32  # values cut to integers, as stored there
    assert grid.volume.geometry.spacing == (3.0, 3.0, 3.0)
    working_shape = np.asarray(grid.reordered_shape) * np.asarray(volume.geometry.spacing_kji)[list(grid.perm)] / 3.0
    assert grid.volume.array.shape == tuple(int(n) for n in np.round(working_shape))
    labels = (grid.volume.array % 3).astype(np.uint8)
    back = grid.labels_back(labels)
    assert back.shape == volume.array.shape and back.dtype == np.uint8
    assert set(np.unique(back)) <= set(np.unique(labels))  # nearest neighbour: no new values
