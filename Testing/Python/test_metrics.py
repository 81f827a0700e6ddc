"""Segmentation metrics (segmentai_core.metrics) and the ``segmentai evaluate`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from segmentai_core.cli.main import main
from segmentai_core.errors import InputError
from segmentai_core.geometry import Geometry
from segmentai_core.metrics import dice, evaluate_labelmaps, to_jsonable
from segmentai_core.volume import Volume

# Spacing along (i, j, k): every axis differs, so an axis-order bug changes the distances.
SPACING = (0.5, 1.0, 3.0)


def cube_pair(shift_kji, shape=(12, 10, 10), size=4, spacing=SPACING):
    """Reference cube [2, 2+size)³ and the same cube moved by ``shift_kji`` voxels, both label 1."""
    geometry = Geometry.create(shape, spacing=spacing)
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    ref[2:2 + size, 2:2 + size, 2:2 + size] = 1
    k, j, i = (2 + s for s in shift_kji)
    pred[k:k + size, j:j + size, i:i + size] = 1
    return Volume(pred, geometry), Volume(ref, geometry)


def test_cube_shifted_along_k_uses_k_spacing():
    # 4³ cubes, shifted one voxel along k (3 mm). Per direction, of the 56 surface voxels:
    # 36 lie on the other surface (0 mm), the 16 of the outer face are one k step away (3 mm), and
    # the 4 inner voxels of the overlapping face are half a millimetre (one i step) from a side face.
    pred, ref = cube_pair((1, 0, 0))
    m = evaluate_labelmaps(pred, ref)[1]
    assert m["dice"] == pytest.approx(2 * 48 / 128)
    assert m["iou"] == pytest.approx(48 / 80)
    assert m["sensitivity"] == pytest.approx(0.75) and m["precision"] == pytest.approx(0.75)
    assert m["pixel_accuracy"] == pytest.approx(1 - 32 / 1200)
    assert m["hd95"] == pytest.approx(3.0)
    assert m["assd"] == pytest.approx(2 * (16 * 3.0 + 4 * 0.5) / 112)
    assert m["surface_dice"] == pytest.approx(2 * 40 / 112)  # within 1 mm: 0 and 0.5 mm voxels
    assert m["voxels_pred"] == 64 and m["voxels_ref"] == 64


def test_cube_shifted_along_i_uses_i_spacing():
    # Same picture along i: the 16 outer-face voxels and the 4 inner ones are one i step (0.5 mm)
    # from the other surface.
    pred, ref = cube_pair((0, 0, 1))
    m = evaluate_labelmaps(pred, ref, tolerance_mm=0.4)[1]
    assert m["hd95"] == pytest.approx(0.5)
    assert m["assd"] == pytest.approx(2 * (20 * 0.5) / 112)
    assert m["surface_dice"] == pytest.approx(2 * 36 / 112)


def test_hd95_of_a_far_shift_in_mm():
    # Shift of 2 voxels along k: outer faces are 6 mm from the other surface.
    pred, ref = cube_pair((2, 0, 0))
    m = evaluate_labelmaps(pred, ref)[1]
    assert m["dice"] == pytest.approx(2 * 32 / 128)
    assert m["hd95"] == pytest.approx(6.0)


def test_identical_masks_are_perfect():
    pred, ref = cube_pair((0, 0, 0))
    m = evaluate_labelmaps(pred, ref)[1]
    assert m["dice"] == m["iou"] == m["surface_dice"] == m["pixel_accuracy"] == 1.0
    assert m["hd95"] == m["assd"] == 0.0


def test_empty_cases():
    geometry = Geometry.create((6, 6, 6))
    empty = Volume(np.zeros(geometry.shape, np.uint8), geometry)
    full = np.zeros(geometry.shape, np.uint8)
    full[1:3, 1:3, 1:3] = 2
    one = Volume(full, geometry)

    both = evaluate_labelmaps(empty, empty, labels=[2])[2]
    assert both["dice"] == both["iou"] == both["surface_dice"] == 1.0
    assert both["hd95"] == both["assd"] == 0.0

    missed = evaluate_labelmaps(empty, one)[2]
    assert missed["dice"] == 0.0 and missed["sensitivity"] == 0.0 and missed["surface_dice"] == 0.0
    assert math.isinf(missed["hd95"]) and math.isinf(missed["assd"])
    extra = evaluate_labelmaps(one, empty)[2]
    assert extra["dice"] == 0.0 and extra["precision"] == 0.0 and math.isinf(extra["hd95"])
    assert to_jsonable(evaluate_labelmaps(one, empty))["2"]["hd95"] is None

    nothing = evaluate_labelmaps(empty, empty)
    assert list(nothing) == ["mean"] and math.isnan(nothing["mean"]["dice"])


def test_default_labels_are_the_union_and_mean_averages():
    geometry = Geometry.create((8, 8, 8))
    pred = np.zeros(geometry.shape, np.int16)
    ref = np.zeros(geometry.shape, np.int16)
    pred[1:4, 1:4, 1:4] = 1
    ref[1:4, 1:4, 1:4] = 1
    pred[5:7, 5:7, 5:7] = 3  # label 3 only predicted
    ref[5:7, 1:3, 5:7] = 7  # label 7 only in the reference
    results = evaluate_labelmaps(Volume(pred, geometry), Volume(ref, geometry))
    assert [k for k in results if k != "mean"] == [1, 3, 7]
    assert results["mean"]["dice"] == pytest.approx(1 / 3)
    assert math.isinf(results["mean"]["hd95"])
    only = evaluate_labelmaps(Volume(pred, geometry), Volume(ref, geometry), labels=[1])
    assert list(only) == [1, "mean"] and only["mean"]["dice"] == 1.0


def test_geometry_mismatch_raises_input_error():
    pred, _ = cube_pair((0, 0, 0))
    other = Volume(pred.array, Geometry.create(pred.geometry.shape, spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(InputError) as caught:
        evaluate_labelmaps(pred, other)
    message = str(caught.value)
    assert "\n" not in message
    assert pred.geometry.describe() in message and other.geometry.describe() in message


def test_dice_helper():
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0
    a[0, 0, :2] = True
    b[0, 0, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI warns about its own internal argument
def test_matches_monai_on_random_blobs():
    # The module documents that scipy gives MONAI's numbers; keep that true.
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    from scipy import ndimage

    rng = np.random.default_rng(0)
    shape = (16, 20, 18)
    pred = (ndimage.gaussian_filter(rng.random(shape), 2.5) > 0.5).astype(np.uint8)
    ref = (ndimage.gaussian_filter(rng.random(shape), 2.5) > 0.5).astype(np.uint8)
    geometry = Geometry.create(shape, spacing=SPACING)
    ours = evaluate_labelmaps(Volume(pred, geometry), Volume(ref, geometry), tolerance_mm=1.5)[1]

    def tensor(mask):
        return torch.from_numpy(mask.astype(np.float32))[None, None]

    spacing_kji = tuple(reversed(SPACING))
    hd95 = metrics.compute_hausdorff_distance(tensor(pred), tensor(ref), percentile=95, spacing=spacing_kji)
    assd = metrics.compute_average_surface_distance(tensor(pred), tensor(ref), symmetric=True, spacing=spacing_kji)
    nsd = metrics.compute_surface_dice(
        tensor(pred), tensor(ref), class_thresholds=[1.5], spacing=spacing_kji, include_background=True
    )
    assert ours["hd95"] == pytest.approx(hd95.item(), rel=1e-5)
    assert ours["assd"] == pytest.approx(assd.item(), rel=1e-5)
    assert ours["surface_dice"] == pytest.approx(nsd.item(), rel=1e-5)


# -- the command line ---------------------------------------------------------------------------


def write_nifti(path, array, spacing=SPACING):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return str(path)


def test_cli_json(tmp_path, capsys):
    pred, ref = cube_pair((1, 0, 0))
    pred_path = write_nifti(tmp_path / "pred.nii.gz", pred.array)
    ref_path = write_nifti(tmp_path / "ref.nii.gz", ref.array)
    assert main(["evaluate", pred_path, ref_path, "--json", "--tolerance", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    label = out["metrics"]["1"]
    assert label["dice"] == pytest.approx(0.75)
    assert label["hd95"] == pytest.approx(3.0)
    assert label["surface_dice"] == pytest.approx(80 / 112)
    assert out["metrics"]["mean"]["dice"] == pytest.approx(0.75)


def test_cli_table_and_labels(tmp_path, capsys):
    pred, ref = cube_pair((0, 0, 1))
    pred_path = write_nifti(tmp_path / "pred.nii.gz", pred.array)
    ref_path = write_nifti(tmp_path / "ref.nii.gz", ref.array)
    assert main(["evaluate", pred_path, ref_path, "--labels", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "Dice" in out and "HD95" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert "1" in rows and "2" in rows and "mean" in rows
    assert "inf" not in rows["2"]  # label 2 absent from both: perfect by definition
    assert main(["evaluate", pred_path, ref_path, "--labels", "one"]) == 2
    assert "--labels" in capsys.readouterr().err


def test_cli_geometry_mismatch_exits_2_with_one_line(tmp_path, capsys):
    pred, ref = cube_pair((0, 0, 0))
    pred_path = write_nifti(tmp_path / "pred.nii.gz", pred.array)
    ref_path = write_nifti(tmp_path / "ref.nii.gz", ref.array, spacing=(1.0, 1.0, 1.0))
    assert main(["evaluate", pred_path, ref_path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "pred.nii.gz" in lines[0] and "ref.nii.gz" in lines[0]


def test_cli_table_shows_segment_names_from_seg_nrrd(tmp_path, capsys):
    from segmentai_core.io import write_segmentation
    from segmentai_core.labels import SegmentLabel

    pred, ref = cube_pair((1, 0, 0))
    pred_path = write_segmentation(pred, [SegmentLabel(1, "liver")], tmp_path / "pred.seg.nrrd")
    ref_path = write_nifti(tmp_path / "ref.nii.gz", ref.array)
    assert main(["evaluate", str(pred_path), ref_path]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("1 "))
    assert row.split()[:3] == ["1", "liver", "0.7500"]
