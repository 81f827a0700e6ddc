"""Training samples of the interactive model: box prompts as the session draws them, simulated thick
slices, and batches of the right shape and content (phantoms only: fast, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.interaction.prompts import Prompt, box_prompts

samples = pytest.importorskip("segmentai_train.interactive.samples")


def _ball(shape=(32, 32, 32), centre=(16, 14, 18), radius=6.0) -> np.ndarray:
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius ** 2


def test_box_clicks_frame_the_object_on_one_slice_like_the_session():
    target = _ball()
    rng = np.random.default_rng(3)
    for _ in range(10):
        centre, outline = samples.box_clicks(target, rng)
        assert centre.positive and not outline.positive
        flat = [axis for axis in range(3) if np.ptp(outline.points_kji[:, axis]) == 0]
        assert len(flat) == 1  # the outline lies on one slice
        axis = flat[0]
        index = int(outline.points_kji[0, axis])
        section = np.moveaxis(target, axis, 0)[index]
        assert section.any()
        # The rectangle encloses the object's section on that slice, within the random 2.5-voxel margin.
        in_plane = np.delete(outline.points_kji, axis, axis=1)
        occupied = np.argwhere(section)
        assert np.all(in_plane.min(0) <= occupied.min(0)) and np.all(in_plane.max(0) >= occupied.max(0))
        assert np.all(in_plane.min(0) >= occupied.min(0) - 2.5) and np.all(in_plane.max(0) <= occupied.max(0) + 2.5)
        # The session turns the same rectangle into the same guidance: centre click + outline samples.
        low = outline.points_kji.min(0)[::-1]  # to (i, j, k)
        high = outline.points_kji.max(0)[::-1]
        session_centre, session_outline = box_prompts(Prompt("box", (tuple(low), tuple(high)), True))
        np.testing.assert_allclose(session_centre.array[0][::-1], centre.points_kji[0], atol=1e-9)
        np.testing.assert_allclose(np.sort(session_outline.array[:, ::-1], axis=0),
                                   np.sort(outline.points_kji, axis=0), atol=1e-9)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_thick_slices_blur_along_one_axis_only(axis):
    image = np.random.default_rng(0).random((30, 32, 34)).astype(np.float32)
    thick = samples.simulate_thick_slices(image, axis, factor=4.0, offset=1.0)
    assert thick.shape == image.shape and thick.dtype == np.float32
    steps = [np.abs(np.diff(thick, axis=a)).mean() / np.abs(np.diff(image, axis=a)).mean() for a in range(3)]
    # Along the thick axis neighbouring voxels are interpolated between slice centres 4 voxels apart.
    assert steps[axis] < 0.25
    assert all(steps[a] > 2 * steps[axis] for a in range(3) if a != axis)
    # A structure constant along the axis is left unchanged: nothing is shifted or rescaled.
    profile = np.random.default_rng(1).random((32, 34)).astype(np.float32)
    constant = np.moveaxis(np.broadcast_to(profile, (30, 32, 34)), 0, axis).copy()
    np.testing.assert_allclose(samples.simulate_thick_slices(constant, axis, 3.3, 2.0), constant, atol=1e-5)


def test_thick_slices_keep_a_slice_centre_exact():
    ramp = np.arange(40, dtype=np.float32)[:, None, None] * np.ones((40, 4, 4), np.float32)
    thick = samples.simulate_thick_slices(ramp, 0, factor=3.0, offset=0.0)
    # A linear ramp averaged over 3 voxels and interpolated linearly between centres is itself (inside).
    np.testing.assert_allclose(thick[3:36], ramp[3:36], atol=1e-4)


def test_sampler_batches_with_boxes_and_thick_slices():
    shapes = samples.ShapePool(32, 4, seed=5)
    sampler = samples.InteractiveSampler([], shapes, size=32, batch_size=3, real_fraction=0.0, seed=2,
                                         box_probability=1.0, thick_slice_probability=1.0)
    fresh = 0
    for _ in range(4):
        batch = next(sampler)
        assert batch["image"].shape == (3, 4, 32, 32, 32) and batch["label"].shape == (3, 1, 32, 32, 32)
        label = batch["label"].numpy()[:, 0] > 0
        previous, positive, negative = (batch["image"].numpy()[:, c] for c in (1, 2, 3))
        for n in range(3):
            assert label[n].any()
            if positive[n].max() > 0.9:  # guidance peaks at 1 on a click: positive ones inside the object
                assert label[n][positive[n] > 0.9].mean() > 0.5
            if not previous[n].any():  # a fresh object starts with a box: centre click and outline
                fresh += 1
                assert positive[n].max() > 0.9 and negative[n].max() > 0.9
                assert not label[n][negative[n] > 0.99].any()  # the outline never crosses the object
    assert fresh > 0
