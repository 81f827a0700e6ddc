"""Restore and postprocessing give what the plain definitions give, on every kind of grid.

The fast restore decides most voxels without interpolating (uniform interpolation cells) and only
interpolates the boundary shell; the fast postprocessing works inside the foreground box with cc3d.
Both are compared voxel for voxel with the straightforward implementations: every class resampled
linearly by SimpleITK, and SciPy's labelling and hole filling over the whole array. Two-class
outputs and postprocessing are exact; many-class outputs may differ in near-ties.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segmentai_core.geometry import Geometry
from segmentai_core.inference import postprocess
from segmentai_core.inference.restore import probabilities_to_labels_reference, restore_labels
from segmentai_core.progress import Progress


def _rotation(a: float, b: float) -> np.ndarray:
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    return np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])


def _probabilities(classes: int, shape=(22, 26, 20), seed: int = 0, background: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = ndimage.gaussian_filter(rng.normal(size=(classes,) + shape), (0, 2, 2, 2)) * 8
    logits[0] += background
    p = np.exp(logits)
    return (p / p.sum(axis=0)).astype(np.float32)


CANONICAL = Geometry.create((22, 26, 20), (2.0, 2.0, 2.0), (20.0, 26.0, -20.0), np.diag([-1.0, -1.0, 1.0]))
GRIDS = {
    # oblique and anisotropic: the general (SimpleITK) path
    "oblique": Geometry.create((52, 44, 40), (0.8, 1.1, 0.9), (-16.0, -20.0, -14.0), _rotation(0.3, 0.2)),
    # axes permuted and flipped relative to the canonical grid: the separable path
    "permuted": Geometry.create((52, 44, 40), (0.8, 1.1, 0.9), (-16.0, -20.0, -14.0),
                                np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1.0]])),
    # the same orientation, thick slices, the input reaching beyond the canonical grid's edge
    "thick-beyond": Geometry.create((9, 60, 50), (0.7, 0.7, 5.0), (24.0, 30.0, -22.0), np.diag([-1.0, -1.0, 1.0])),
}


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("classes,values", [(2, [1]), (2, [7]), (5, [1, 2, 3, 4]), (12, list(range(3, 14))),
                                            (4, [300, 301, 302])])
def test_restore_equals_the_plain_definition(grid, classes, values):
    original = GRIDS[grid]
    probabilities = _probabilities(classes)
    labels, box = restore_labels(probabilities, CANONICAL, original, values, Progress())
    reference = probabilities_to_labels_reference(probabilities, CANONICAL, original, values, Progress())
    assert labels.dtype == reference.dtype and labels.shape == original.shape
    assert reference.any()
    differ = int((labels != reference).sum())
    if classes == 2:
        assert differ == 0, f"{differ} voxels differ"  # one channel decides: exact
    else:
        # Candidates are the classes winning at a voxel's corners; another class can win between them
        # only in a near-tie (these fields are noise, so ties are far more common than in anatomy).
        assert differ <= 0.005 * int((reference > 0).sum()), f"{differ} voxels differ"
    outside = np.ones(original.shape, dtype=bool)
    outside[box] = False
    assert not labels[outside].any()  # the box holds every foreground voxel


def test_restore_of_an_empty_prediction():
    probabilities = _probabilities(3, background=100.0)
    labels, box = restore_labels(probabilities, CANONICAL, GRIDS["oblique"], [1, 2], Progress())
    assert box is None and not labels.any() and labels.shape == GRIDS["oblique"].shape


def test_foreground_touching_the_canonical_edge():
    probabilities = _probabilities(2)
    probabilities[1, :, :, :3], probabilities[0, :, :, :3] = 0.9, 0.1  # a slab of object on one face
    for grid in GRIDS.values():
        labels, _ = restore_labels(probabilities, CANONICAL, grid, [1], Progress())
        assert np.array_equal(labels, probabilities_to_labels_reference(probabilities, CANONICAL, grid, [1],
                                                                         Progress()))


# --- postprocessing ----------------------------------------------------------------------------------

def _scipy_largest(labelmap, labels):
    out = labelmap.copy()
    for value in labels:
        mask = out == value
        components, count = ndimage.label(mask, np.ones((3, 3, 3), bool))
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            out[mask & (components != np.argmax(sizes))] = 0
    return out


def _scipy_fill(labelmap, labels):
    out = labelmap.copy()
    for value in labels:
        box = postprocess.bounding_box(out == value)
        if box is None:
            continue
        region = out[box]
        region[ndimage.binary_fill_holes(region == value) & (region == 0)] = value
    return out


def _blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(40, 44, 36)), 1.5)
    labelmap = np.zeros(field.shape, dtype=np.uint8)
    labelmap[field > 0.05] = 1
    labelmap[field < -0.08] = 4
    labelmap[10:20, 10:20, 10:20] = 2
    labelmap[13:17, 13:17, 13:17] = 0  # a hole inside label 2
    labelmap[0, :, :5] = 1  # an object touching the array's border
    return labelmap


@pytest.mark.parametrize("accelerated", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_postprocessing_equals_scipy(seed, accelerated, monkeypatch):
    if accelerated and postprocess.cc3d is None:
        pytest.skip("connected-components-3d is not installed")
    if not accelerated:
        monkeypatch.setattr(postprocess, "cc3d", None)
    labelmap = _blobs(seed)
    labels = [1, 2, 4]
    box = postprocess.bounding_box(labelmap > 0, margin=0)
    for within in (None, box):
        largest = postprocess.keep_largest_component(labelmap.copy(), labels, within=within)
        assert np.array_equal(largest, _scipy_largest(labelmap, labels))
        filled = postprocess.fill_holes(largest.copy(), labels, within=within)
        assert np.array_equal(filled, _scipy_fill(largest, labels))
        assert filled[15, 15, 15] == 2  # the hole was filled


def test_restore_in_small_chunks_is_the_same(monkeypatch):
    """The shell of axis-parallel grids is decided in chunks of cells: their size changes nothing."""
    from segmentai_core.inference import restore_shell

    for classes, values in ((2, [1]), (12, list(range(3, 14)))):
        probabilities = _probabilities(classes)
        for grid in ("permuted", "thick-beyond"):
            whole, _ = restore_labels(probabilities, CANONICAL, GRIDS[grid], values, Progress())
            monkeypatch.setattr(restore_shell, "_CHUNK_VOXELS", 50)
            chunked, _ = restore_labels(probabilities, CANONICAL, GRIDS[grid], values, Progress())
            monkeypatch.undo()
            assert np.array_equal(whole, chunked)


@pytest.mark.parametrize("fast_sizes", [True, False])
def test_postprocessing_of_nested_labels_equals_scipy(fast_sizes, monkeypatch):
    """An island of one label inside another's hole, specks, and a speck inside a hole: same as SciPy."""
    if postprocess.cc3d is None:
        pytest.skip("connected-components-3d is not installed")
    if not fast_sizes:
        monkeypatch.setattr(postprocess, "fastremap", None)
    labelmap = np.zeros((30, 32, 28), dtype=np.uint8)
    labelmap[4:26, 4:28, 4:24] = 3  # label 3 with a hollow inside
    labelmap[8:22, 8:24, 8:20] = 0
    labelmap[11:19, 11:21, 11:17] = 1  # label 1 inside the hollow, itself hollow
    labelmap[13:17, 13:19, 13:15] = 0
    labelmap[2, 2, 2] = labelmap[15, 15, 13] = 1  # specks of label 1 (one inside its own hole)
    labelmap[0, 0, 27] = 3
    for labels in ([1, 3], [3, 1], [1], [3]):
        largest = postprocess.keep_largest_component(labelmap.copy(), labels,
                                                     within=postprocess.bounding_box(labelmap > 0, margin=0))
        assert np.array_equal(largest, _scipy_largest(labelmap, labels))
        filled = postprocess.fill_holes(largest.copy(), labels)
        assert np.array_equal(filled, _scipy_fill(largest, labels))


@pytest.mark.parametrize("shape", [(7, 9), (6, 8, 5), (1, 4, 4)])
def test_bounding_box_equals_find_objects(shape):
    rng = np.random.default_rng(len(shape))
    for _ in range(20):
        mask = rng.random(shape) < rng.choice([0.0, 0.02, 0.3])
        found = ndimage.find_objects(mask.astype(np.uint8))
        for margin in (0, 1, 2):
            expected = None if not found else tuple(
                slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(found[0], shape))
            assert postprocess.bounding_box(mask, margin) == expected


@pytest.mark.parametrize("speck_in_hole", [False, True])
def test_clean_labels_equals_largest_then_fill(speck_in_hole):
    """One label: the two labellings run side by side; the result is the sequential one."""
    labelmap = np.zeros((24, 26, 22), dtype=np.uint8)
    labelmap[3:21, 3:23, 3:19] = 5
    labelmap[8:16, 8:18, 8:14] = 0  # a hole
    labelmap[0, 0, 0] = 5  # a speck outside
    if speck_in_hole:
        labelmap[11, 12, 10] = 5  # a speck inside the hole: dropped, then filled with the hole
    box = postprocess.bounding_box(labelmap > 0, margin=0)
    expected = postprocess.fill_holes(postprocess.keep_largest_component(labelmap.copy(), [5], within=box), [5],
                                      within=box)
    assert np.array_equal(expected, _scipy_fill(_scipy_largest(labelmap, [5]), [5]))
    for largest, holes in ((True, True), (True, False), (False, True)):
        cleaned = postprocess.clean_labels(labelmap.copy(), [5], largest=largest, holes=holes, within=box)
        reference = labelmap.copy()
        if largest:
            reference = _scipy_largest(reference, [5])
        if holes:
            reference = _scipy_fill(reference, [5])
        assert np.array_equal(cleaned, reference)
