"""Slice-wise hole filling (``postprocess.fill_slice_holes``): a brain's ventricles, open to the
outside in 3D through a narrow channel, are filled; concavities open in every slice (sulci) are not."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.inference import postprocess


def _ball_with_open_cavity(shape=(40, 44, 48)):
    """A ball with an inner cavity that reaches the outside through a 1-voxel channel downwards."""
    k, j, i = np.indices(shape)
    centre = np.array(shape) / 2
    r = np.sqrt(((k - centre[0]) / 16) ** 2 + ((j - centre[1]) / 18) ** 2 + ((i - centre[2]) / 20) ** 2)
    ball = r <= 1
    cavity = (np.abs(k - centre[0]) <= 4) & (np.abs(j - centre[1]) <= 3) & (np.abs(i - centre[2]) <= 6)
    channel = (k <= centre[0]) & (j == int(centre[1])) & (i == int(centre[2]))  # to the ball's bottom
    return ball & ~cavity & ~channel, cavity


def test_a_cavity_open_in_3d_is_filled_slice_by_slice():
    mask, cavity = _ball_with_open_cavity()
    labelmap = mask.astype(np.uint8) * 3
    assert not postprocess.fill_holes(labelmap.copy(), [3])[cavity].any()  # no 3D hole: 3D filling leaves it
    filled = postprocess.fill_slice_holes(labelmap.copy(), [3])
    assert (filled[cavity] == 3).all()
    outside = ~mask & ~cavity
    # Only the channel (enclosed in its axial slices) is added besides the cavity; nothing outside the ball.
    k, j, i = np.indices(mask.shape)
    ball = np.sqrt(((k - 20) / 16) ** 2 + ((j - 22) / 18) ** 2 + ((i - 24) / 20) ** 2) <= 1
    assert not (filled[outside & ~ball]).any()


def test_open_notches_and_other_labels_are_left_alone():
    mask, _ = _ball_with_open_cavity()
    labelmap = mask.astype(np.uint8) * 3
    labelmap[:, :, :6] = 0
    notch = np.zeros_like(mask)
    notch[:, 20:24, 38:] = True  # a groove cut in from one side through every axial slice
    labelmap[notch] = 0
    other = np.zeros_like(mask)
    other[18:22, 20:24, 20:26] = True  # another label inside the cavity keeps its voxels
    labelmap[other] = 7
    filled = postprocess.fill_slice_holes(labelmap.copy(), [3])
    assert (filled[other] == 7).all()
    assert not (filled[notch] == 3).any()  # open to the side in every slice: not a hole
    assert np.array_equal(postprocess.fill_slice_holes(np.zeros((8, 8, 8), np.uint8), [1]), np.zeros((8, 8, 8)))


def test_slice_holes_filled_on_the_model_grid_reach_the_input_grid():
    """The engine fills slice-wise holes on the model's grid (``fill_holes_in_probabilities``):
    the cavity becomes certain object there, and the restore to a grid twice as fine fills it too."""
    from segmentai_core.geometry import Geometry
    from segmentai_core.inference.restore import restore_labels
    from segmentai_core.progress import Progress

    mask, cavity = _ball_with_open_cavity()
    probabilities = np.stack([1.0 - 0.9 * mask, 0.9 * mask]).astype(np.float32)
    filled = postprocess.fill_holes_in_probabilities(probabilities, largest=True, slice_holes=True)
    assert filled >= int(cavity.sum())
    assert (probabilities[1][cavity] == 1).all() and (probabilities[0][cavity] == 0).all()
    assert np.allclose(probabilities[1][~cavity & mask], 0.9)  # the rest is untouched
    coarse = Geometry.create(mask.shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    fine = Geometry.create(tuple(2 * n for n in mask.shape), (1.0, 1.0, 1.0), (-0.5, -0.5, -0.5), np.eye(3))
    labels, _ = restore_labels(probabilities, coarse, fine, [1], Progress())
    k, j, i = np.nonzero(cavity)
    assert (labels[2 * k, 2 * j, 2 * i] == 1).all()  # every cavity voxel's fine counterpart is object


def test_many_classes_fill_each_its_own_slice_holes():
    mask, cavity = _ball_with_open_cavity()
    probabilities = np.zeros((3,) + mask.shape, dtype=np.float32)
    probabilities[0] = ~mask
    probabilities[2] = mask
    postprocess.fill_holes_in_probabilities(probabilities, largest=False, slice_holes=True)
    assert (np.argmax(probabilities, axis=0)[cavity] == 2).all()
    assert not probabilities[1].any()


def test_pieces_are_dropped_on_the_input_grid_not_on_the_model_grid():
    """Fills only on the model's grid: an island stays in the probabilities (a piece joined on the
    coarse grid can come apart after the restore), and keep-largest on the input grid drops it."""
    from segmentai_core.geometry import Geometry
    from segmentai_core.inference.restore import restore_labels
    from segmentai_core.progress import Progress

    mask, _ = _ball_with_open_cavity()
    island = np.zeros_like(mask)
    island[1:3, 1:3, 1:3] = True
    foreground = mask | island
    probabilities = np.stack([1.0 - 0.8 * foreground, 0.8 * foreground]).astype(np.float32)
    before = probabilities.copy()
    assert postprocess.fill_holes_in_probabilities(probabilities, largest=True, slice_holes=False) == 0
    assert np.array_equal(probabilities, before)  # the open cavity is no 3D hole; the island is kept
    coarse = Geometry.create(mask.shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    fine = Geometry.create(tuple(2 * n for n in mask.shape), (1.0, 1.0, 1.0), (-0.5, -0.5, -0.5), np.eye(3))
    labels, box = restore_labels(probabilities, coarse, fine, [1], Progress())
    import cc3d
    assert cc3d.connected_components(labels, connectivity=26).max() == 2
    postprocess.keep_largest_component(labels, [1], within=box)
    assert cc3d.connected_components(labels, connectivity=26).max() == 1
    assert not labels[:6, :6, :6].any()


@pytest.mark.parametrize("seed", range(6))
def test_slice_holes_with_cc3d_equal_scipy(seed, monkeypatch):
    """The one 2-D cc3d labelling of stacked slices finds what SciPy's planar labelling finds,
    along every axis, on random masks with many small enclosed pockets."""
    rng = np.random.default_rng(seed)
    mask = rng.random((9 + seed, 13, 11 - seed // 2)) < 0.55 + 0.05 * seed
    fast = [postprocess._slice_holes(mask, axis) for axis in range(3)]
    monkeypatch.setattr(postprocess, "cc3d", None)
    for axis in range(3):
        expected = postprocess._slice_holes(mask, axis)
        assert expected.any() or seed == 0
        assert np.array_equal(fast[axis], expected)
