"""The segmentation engine: geometry invariance, strategies, bad input, progress, cancellation."""

import numpy as np
import pytest

from segmentai_core.errors import Cancelled, InputError, ResourceError
from segmentai_core.geometry import Geometry
from segmentai_core.inference.canonical import resample_to
from segmentai_core.inference.engine import Segmenter
from segmentai_core.inference.windows import predict_probabilities
from segmentai_core.metrics import dice
from segmentai_core.phantoms import blob_phantom, head_phantom, rotation_matrix
from segmentai_core.progress import CancelToken, Progress
from segmentai_core.volume import Volume


def restore_storage(volume: Volume) -> Volume:
    """The same voxels stored with i and k swapped and j reversed (a different file layout)."""
    g = volume.geometry
    d = g.direction_matrix
    array = np.ascontiguousarray(np.flip(volume.array.transpose(2, 1, 0), axis=1))
    spacing = (g.spacing[2], g.spacing[1], g.spacing[0])
    geometry = Geometry.create(array.shape, spacing, g.ijk_to_lps([0, g.size_ijk[1] - 1, 0]),
                               np.stack([d[:, 2], -d[:, 1], d[:, 0]], axis=1))
    return Volume(array, geometry)


def undo_storage(array: np.ndarray) -> np.ndarray:
    return np.flip(array, axis=1).transpose(2, 1, 0)


def test_permuted_and_flipped_storage_gives_the_same_segmentation(tiny_package):
    image, _ = blob_phantom(shape=(30, 40, 36), spacing=(1.5, 1.1, 2.3), origin=(5, -3, 7))
    segmenter = Segmenter(tiny_package, device="cpu")
    a = segmenter.segment(image).labelmap
    b = segmenter.segment(restore_storage(image)).labelmap
    assert b.geometry.shape == (36, 40, 30)
    agreement = np.mean(undo_storage(b.array) == a.array)
    assert agreement > 0.999, agreement


def test_default_model_same_head_on_oblique_grid_lands_on_the_same_anatomy(default_package):
    """A head phantom sampled on an axis-aligned grid and on an oblique, anisotropic one."""
    image, mask = head_phantom(seed=4242)
    direction = rotation_matrix([1, 2, 0.5], 0.35) @ np.diag([1.0, -1.0, 1.0])
    centre = image.geometry.ijk_to_lps((np.array(image.geometry.size_ijk) - 1) / 2)
    oblique = Geometry.create((70, 120, 100), (1.4, 1.5, 2.7), (0, 0, 0), direction)
    shift = centre - oblique.ijk_to_lps((np.array(oblique.size_ijk) - 1) / 2)
    oblique = Geometry.create(oblique.shape, oblique.spacing, shift, direction)
    oblique_image = resample_to(image, oblique, order=1)
    segmenter = Segmenter(default_package, device="cpu")
    straight = segmenter.segment(image).labelmap
    tilted = segmenter.segment(oblique_image).labelmap
    assert tilted.geometry.same_grid(oblique)
    # Compare in physical space: bring the oblique result back onto the straight grid.
    back = resample_to(tilted, straight.geometry, order=0).array
    assert dice(back, straight.array) > 0.95
    assert dice(straight.array, mask.array) > 0.9


def test_whole_volume_and_sliding_windows_agree(default_package):
    image, _ = head_phantom(seed=77)
    segmenter = Segmenter(default_package, device="cpu")
    from segmentai_core.inference.preprocess import prepare_input

    prepared = prepare_input(image, default_package.manifest.preprocessing)
    plan = segmenter.plan(prepared.array.size)
    assert not plan.whole_volume_ok, "windows are the default: they match MONAI's output"
    windows = predict_probabilities(segmenter.network, prepared.array, plan, segmenter.device)
    plan.whole_volume_ok = True  # what `"strategy": "whole_volume"` in a manifest selects
    whole = predict_probabilities(segmenter.network, prepared.array, plan, segmenter.device)
    # Same network, no window seams: the masks differ only on a thin band of boundary voxels.
    assert dice(whole.argmax(0), windows.argmax(0)) > 0.97


def test_windows_match_monai_sliding_window_inference(default_package):
    """The default path gives MONAI's own output when nothing is cropped away."""
    import torch
    from monai.inferers import sliding_window_inference

    from segmentai_core.inference.preprocess import prepare_input

    image, _ = head_phantom(seed=78, shape=(64, 72, 64))
    segmenter = Segmenter(default_package, device="cpu")
    prepared = prepare_input(image, default_package.manifest.preprocessing)
    plan = segmenter.plan(prepared.array.size)
    plan.crop_foreground = False
    ours = predict_probabilities(segmenter.network, prepared.array, plan, segmenter.device)
    with torch.inference_mode():
        logits = sliding_window_inference(torch.from_numpy(prepared.array)[None, None], plan.patch_kji, 1,
                                          segmenter.network, overlap=plan.overlap, mode="gaussian")
    theirs = torch.softmax(logits, 1)[0].numpy()
    assert np.abs(ours - theirs).max() < 1e-4


def test_nan_and_inf_voxels_are_repaired_with_a_note(tiny_package):
    image, _ = blob_phantom(shape=(20, 24, 22))
    image.array[0, 0, :5] = np.nan
    image.array[1, 1, 1] = np.inf
    result = Segmenter(tiny_package, device="cpu").segment(image)
    assert any("6 NaN/infinite voxels" in note for note in result.notes)
    assert np.isnan(image.array[0, 0, 0]), "the caller's array must not be modified"


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((10, 12, 14), 7.0, dtype=np.float32), "constant"),
        (np.full((10, 12, 14), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_unusable_volumes_are_refused(tiny_package, array, message):
    with pytest.raises(InputError, match=message):
        Segmenter(tiny_package, device="cpu").segment(Volume(array, Geometry.create(array.shape)))


def test_volume_beyond_memory_budget_is_refused_clearly(tiny_package):
    image, _ = blob_phantom(shape=(40, 40, 40))
    segmenter = Segmenter(tiny_package, device="cpu", memory_budget_bytes=1_000_000)
    with pytest.raises(ResourceError, match="memory budget"):
        segmenter.segment(image)


def test_windows_are_used_when_the_whole_volume_does_not_fit(tiny_package):
    image, _ = blob_phantom(shape=(40, 40, 40), spacing=(2.0, 2.0, 2.0))
    messages = []
    segmenter = Segmenter(tiny_package, device="cpu")
    plan = segmenter.plan(0)
    plan.crop_foreground = False
    plan.budget_bytes = int(np.prod(plan.patch_kji) * plan.bytes_per_voxel)  # one window at a time
    probabilities = predict_probabilities(segmenter.network, image.array, plan, segmenter.device,
                                          Progress(lambda f, m: messages.append(m)))
    assert probabilities.shape == (2, 40, 40, 40)
    assert any(m.startswith("Windows") for m in messages)
    assert np.allclose(probabilities.sum(0), 1.0, atol=1e-4)


def test_progress_is_monotonic_and_reaches_one(tiny_package):
    image, _ = blob_phantom(shape=(20, 24, 22))
    fractions = []
    Segmenter(tiny_package, device="cpu").segment(image, Progress(lambda f, m: fractions.append(f)))
    assert fractions[-1] == 1.0
    assert all(b >= a for a, b in zip(fractions, fractions[1:]))


def test_cancel_stops_the_job_with_cancelled(tiny_package):
    image, _ = blob_phantom(shape=(20, 24, 22))
    token = CancelToken()

    def cancel_at_network(fraction, message):
        if fraction > 0.1:
            token.cancel()

    with pytest.raises(Cancelled):
        Segmenter(tiny_package, device="cpu").segment(image, Progress(cancel_at_network, token))


def test_mirror_tta_runs_and_changes_little(default_package):
    image, mask = head_phantom(seed=99)
    plain = Segmenter(default_package, device="cpu").segment(image).labelmap.array
    tta = Segmenter(default_package, device="cpu", tta=True).segment(image).labelmap.array
    assert dice(plain, tta) > 0.97
    assert dice(tta, mask.array) > 0.9


def test_unavailable_device_is_a_clear_error(tiny_package):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ResourceError, match="CUDA is not available"):
        Segmenter(tiny_package, device="cuda")


def test_2d_model_runs_slice_by_slice(tmp_path):
    import torch

    from segmentai_core.models.networks import build_network
    from segmentai_core.models.package import write_model_package

    from conftest import TINY_MANIFEST

    manifest = dict(TINY_MANIFEST, id="tiny-2d", dimensions=2,
                    inference={"patch_size": [32, 32], "overlap": 0.25, "mirror_axes": [0]})
    torch.manual_seed(0)
    network = build_network(manifest["architecture"], 2, 1, 2)
    package = write_model_package(tmp_path / "tiny2d", manifest, network.state_dict())
    image, _ = blob_phantom(shape=(12, 30, 26), spacing=(2.0, 2.0, 2.0))
    result = Segmenter(package, device="cpu", tta=True).segment(image)
    assert result.labelmap.array.shape == image.array.shape
    # Slice-wise: a slice's result depends on that slice only.
    changed = image.array.copy()
    changed[:6] = changed[:6][:, ::-1]
    other = Segmenter(package, device="cpu", tta=True).segment(Volume(changed, image.geometry))
    assert np.array_equal(other.labelmap.array[6:], result.labelmap.array[6:])


def test_segment_write_read_round_trip_on_oblique_anisotropic_grid(tmp_path, tiny_package):
    from segmentai_core.io import read_segmentation, read_volume, write_segmentation

    direction = rotation_matrix([0.3, 1, 2], 0.6)
    image, _ = blob_phantom(shape=(22, 34, 28), spacing=(0.8, 1.3, 2.6), direction=direction, origin=(-7, 12, 30))
    path = tmp_path / "oblique.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(image.to_sitk(), str(path))
    loaded = read_volume(path)
    result = Segmenter(tiny_package, device="cpu").segment(loaded)
    written = write_segmentation(result.labelmap, result.labels, tmp_path / "oblique.seg.nrrd")
    back, labels = read_segmentation(written)
    assert back.geometry.same_grid(loaded.geometry, 1e-3)
    assert np.array_equal(back.array, result.labelmap.array)
    assert labels[0].name == "Object"


def test_network_loading_beside_preprocessing_still_refuses_a_tampered_model(tmp_path):
    """The network loads in a thread while the input is resampled: what loading raises reaches the
    caller unchanged, and the stages still add up to the job's own wall time."""
    import time

    from segmentai_core.errors import ModelError
    from segmentai_core.testing import make_tiny_package

    image, _ = blob_phantom(shape=(24, 24, 24), seed=3)
    package = make_tiny_package(tmp_path / "tiny")
    t = time.perf_counter()
    result = Segmenter(package, device="cpu").segment(image)
    wall = time.perf_counter() - t
    assert list(result.timings)[0] == "load_model" and result.timings["load_model"] > 0
    assert sum(result.timings.values()) <= wall
    weights = package.weights_path
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="hash mismatch"):
        Segmenter(package, device="cpu").segment(image)


def test_a_load_started_in_the_background_is_used_once_and_its_errors_reach_segment(tmp_path):
    """``load_in_background`` (the CLI starts it before reading the input): ``segment`` takes that
    load instead of starting another, gives the same labels, and raises what the load raised."""
    from segmentai_core.errors import ModelError
    from segmentai_core.testing import make_tiny_package

    image, _ = blob_phantom(shape=(24, 24, 24), seed=3)
    package = make_tiny_package(tmp_path / "tiny")
    expected = Segmenter(package, device="cpu").segment(image).labelmap.array
    segmenter = Segmenter(package, device="cpu")
    segmenter.load_in_background()
    pending = segmenter._loading
    segmenter.load_in_background()  # a second call starts nothing new
    assert segmenter._loading is pending
    assert np.array_equal(segmenter.segment(image).labelmap.array, expected)
    assert segmenter._loading is None and segmenter._network is not None
    weights = package.weights_path
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    tampered = Segmenter(package, device="cpu")
    tampered.load_in_background()
    with pytest.raises(ModelError, match="hash mismatch"):
        tampered.segment(image)
