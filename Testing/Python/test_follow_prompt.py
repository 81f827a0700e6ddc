"""A click keeps only the connected change that touches it (``session._follow_prompt``): labelled
inside the change's bounding box, it keeps what labelling the whole crop kept, prompts beside or
outside the crop included; and the working grid's voxels beyond a region of interest are found
without resampling a crop-sized array (``linear_resample.covered_axis_parallel``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segmentai_core.geometry import Geometry
from segmentai_core.inference.canonical import resample_to
from segmentai_core.inference.linear_resample import covered_axis_parallel
from segmentai_core.interaction.prompts import Prompt, polyline_samples
from segmentai_core.interaction.region import LocalRegion
from segmentai_core.interaction.session import _follow_prompt
from segmentai_core.phantoms import rotation_matrix
from segmentai_core.volume import Volume

GRID = Geometry.create((30, 40, 36), (2.0, 1.0, 0.8), (4.0, -3.0, 1.0), rotation_matrix((0.3, 1.0, 0.2), 0.4))
CROP = (slice(5, 27), slice(3, 35), slice(6, 30))


def _whole_crop_reference(changed, new, prompt):
    """The rule labelled over the whole crop, the prompt's voxels dilated twice there."""
    changed = changed & (new == prompt.positive)
    labels, _ = ndimage.label(changed, np.ones((3, 3, 3), dtype=bool))
    points = prompt.array if prompt.kind == "point" else polyline_samples(prompt.array, 0.5)
    kji = GRID.ijk_to_array_index(points) - np.array([s.start for s in CROP])
    kji = kji[np.all((kji >= 0) & (kji < np.array(changed.shape)), axis=1)]
    touched = np.zeros(changed.shape, dtype=bool)
    touched[tuple(kji.T)] = True
    keep = np.unique(labels[ndimage.binary_dilation(touched, iterations=2) & changed])
    return np.isin(labels, keep[keep > 0])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("positive", [True, False])
def test_the_boxed_labelling_keeps_what_the_whole_crop_kept(seed, positive):
    rng = np.random.default_rng(seed)
    shape = tuple(s.stop - s.start for s in CROP)
    changed = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.56  # blobs, a few touching the crop's edge
    changed[:, :, :4] = False
    new = rng.random(shape) > 0.2 if positive else rng.random(shape) > 0.8
    region = LocalRegion(CROP, GRID.cropped([s.start for s in CROP], [s.stop for s in CROP]), GRID)
    # Clicks inside the change, beside it, a voxel outside the crop, and a scribble across the crop's edge.
    inside = np.argwhere(changed)[rng.integers(0, int(changed.sum()), 3)] + [s.start for s in CROP]
    prompts = [Prompt("point", tuple(tuple(float(v) for v in p[::-1]) for p in inside), positive),
               Prompt("point", ((CROP[2].start + 2.0, CROP[1].start + 1.0, CROP[0].start - 1.0),), positive),
               Prompt("scribble", ((CROP[2].start - 3.0, 20.0, 15.0), (CROP[2].start + 9.0, 22.0, 16.0)), positive)]
    for prompt in prompts:
        np.testing.assert_array_equal(_follow_prompt(changed, new, prompt, GRID, region),
                                      _whole_crop_reference(changed, new, prompt))


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, 1.0, -1.0]), np.array([[0, 1, 0], [0, 0, -1],
                                                                                             [-1, 0, 0]], float)])
def test_covered_voxels_equal_resampled_ones(direction):
    crop = Geometry.create((13, 17, 11), (1.5, 0.7, 0.9), (2.0, 3.0, -4.0), direction)
    low = crop.corners_lps().min(axis=0) - np.array([3.3, 2.6, 4.1])  # the working grid reaches beyond the crop
    working = Geometry.create((16, 14, 18), (1.6, 1.9, 1.7), tuple(low), np.eye(3))
    ones = resample_to(Volume(np.ones(crop.shape, dtype=np.float32), crop), working, order=1).array
    covered = covered_axis_parallel(crop, working)
    assert covered is not None and 0 < covered.sum() < covered.size
    np.testing.assert_array_equal(covered, ones >= 0.5)
    assert covered_axis_parallel(crop, Geometry.create((5, 5, 5), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                                       rotation_matrix((0.0, 0.0, 1.0), 0.3))) is None
