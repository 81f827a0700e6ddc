"""Slice-wise hole filling (``postprocess.fill_slice_holes``): a brain's ventricles, open to the
outside in 3D through a narrow channel, are filled; concavities open in every slice (sulci) are not."""

from __future__ import annotations

import numpy as np

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
