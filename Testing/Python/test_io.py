"""File I/O of the core: geometry-exact round trips, Slicer .seg.nrrd, DICOM series, bad inputs, safe writes."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from segmentai_core.errors import InputError, OutputError
from segmentai_core.geometry import Geometry
from segmentai_core.io import (
    read_labelmap,
    read_segmentation,
    read_volume,
    write_labelmap,
    write_segmentation,
    write_volume,
)
from segmentai_core.labels import Code, SegmentLabel, Terminology
from segmentai_core.volume import Volume

# -- data helpers -----------------------------------------------------------------------------


def _rotation(axis, angle: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues): a proper oblique direction (det +1)."""
    a = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _oblique_geometry(shape=(6, 7, 9)) -> Geometry:
    return Geometry.create(
        shape, spacing=(0.7, 1.3, 2.9), origin=(-12.5, 30.25, 101.0), direction=_rotation((1.0, 2.0, 3.0), 0.5)
    )


def _labelmap(max_label: int = 3) -> Volume:
    geometry = _oblique_geometry()
    rng = np.random.default_rng(7)
    array = rng.integers(0, max_label + 1, size=geometry.shape).astype(np.int64)
    array[0, 0, 0] = 0  # asymmetry so that a flipped axis cannot pass
    array[-1, -1, -1] = max_label
    return Volume(array, geometry)


TERMINOLOGY = Terminology(Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "10200004", "Liver"))
LABELS = [
    SegmentLabel(1, "liver", (0.87, 0.5, 0.2), TERMINOLOGY),
    SegmentLabel(2, "spleen", (0.62, 0.31, 0.65)),
    SegmentLabel(3, "left kidney", (0.72, 0.74, 0.36)),
    SegmentLabel(5, "tumour", (1.0, 0.0, 0.0)),  # no voxels: still listed
]


def _single_line_naming(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert name in message, message
    assert "\n" not in message, message


# -- label map and volume round trips ---------------------------------------------------------


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_labelmap_round_trip_keeps_voxels_on_oblique_anisotropic_grid(tmp_path: Path, ext: str) -> None:
    labelmap = _labelmap()
    path = write_labelmap(labelmap, tmp_path / f"labels{ext}")
    back = read_labelmap(path)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, labelmap.array)
    assert back.geometry.same_grid(labelmap.geometry, tolerance_mm=1e-3)
    assert back.geometry.is_oblique()
    assert [p.name for p in tmp_path.iterdir()] == [f"labels{ext}"]  # no temporary left


def test_labelmap_with_large_values_uses_uint16(tmp_path: Path) -> None:
    labelmap = _labelmap()
    labelmap = labelmap.with_array(labelmap.array * 100)
    back = read_labelmap(write_labelmap(labelmap, tmp_path / "big.nrrd"))
    assert back.array.dtype == np.uint16
    np.testing.assert_array_equal(back.array, labelmap.array)


@pytest.mark.parametrize("ext,dtype", [(".nrrd", np.int16), (".nii.gz", np.float32), (".mha", np.uint16)])
def test_write_volume_keeps_dtype_and_grid(tmp_path: Path, ext: str, dtype) -> None:
    geometry = _oblique_geometry()
    array = (np.arange(np.prod(geometry.shape)).reshape(geometry.shape) % 1000).astype(dtype)
    path = write_volume(Volume(array, geometry), tmp_path / f"image{ext}")
    back = read_volume(path)
    assert back.array.dtype == dtype
    np.testing.assert_array_equal(back.array, array)
    assert back.geometry.same_grid(geometry)


def test_nrrd_keeps_nan(tmp_path: Path) -> None:
    array = np.zeros((3, 4, 5), np.float32)
    array[1, 2, 3] = np.nan
    back = read_volume(write_volume(Volume(array, Geometry.create(array.shape)), tmp_path / "nan.nrrd"))
    assert np.isnan(back.array[1, 2, 3])


# -- Slicer .seg.nrrd -------------------------------------------------------------------------


def test_seg_nrrd_round_trip_and_slicer_metadata(tmp_path: Path) -> None:
    labelmap = _labelmap()
    path = write_segmentation(
        labelmap, LABELS, tmp_path / "result.seg.nrrd", extra_metadata={"SegmentAI_Model": "demo-unet 1.0"}
    )

    back, labels = read_segmentation(path)
    np.testing.assert_array_equal(back.array, labelmap.array)
    assert back.geometry.same_grid(labelmap.geometry, tolerance_mm=1e-3)
    assert [(lab.value, lab.name) for lab in labels] == [(lab.value, lab.name) for lab in LABELS]
    for got, want in zip(labels, LABELS):
        np.testing.assert_allclose(got.color, want.color, atol=1e-6)
        assert got.terminology == want.terminology

    raw = path.read_bytes()
    header = raw[: raw.index(b"\n\n")].decode()
    assert "SegmentAI_Model:=demo-unet 1.0" in header
    assert "Segmentation_MasterRepresentation:=Binary labelmap" in header
    assert "Segment0_Tags:=TerminologyEntry:Segmentation category and type" in header
    # Extent is i0 i1 j0 j1 k0 k1 of the label's voxels; the empty segment gets the full extent.
    k, j, i = np.nonzero(labelmap.array == 2)
    assert f"Segment1_Extent:={i.min()} {i.max()} {j.min()} {j.max()} {k.min()} {k.max()}" in header
    assert "Segment3_Extent:=0 8 0 6 0 5" in header


def test_seg_nrrd_loads_in_slicerio(tmp_path: Path) -> None:
    slicerio = pytest.importorskip("slicerio")
    labelmap = _labelmap()
    path = write_segmentation(labelmap, LABELS, tmp_path / "result.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    segments = segmentation["segments"]
    assert [s["name"] for s in segments] == [lab.name for lab in LABELS]
    assert [s["labelValue"] for s in segments] == [lab.value for lab in LABELS]
    for segment, label in zip(segments, LABELS):
        np.testing.assert_allclose(segment["color"], label.color, atol=1e-6)
    assert segments[0]["terminology"]["type"] == ["SCT", "10200004", "Liver"]
    np.testing.assert_allclose(segmentation["ijkToLPS"], labelmap.geometry.ijk_to_lps_matrix(), atol=1e-6)
    # slicerio keeps pynrrd's (i, j, k) axis order.
    np.testing.assert_array_equal(segmentation["voxels"], labelmap.array.transpose(2, 1, 0))


def test_write_labelmap_to_seg_nrrd_and_unlisted_values_get_generic_segments(tmp_path: Path) -> None:
    labelmap = _labelmap()
    _, labels = read_segmentation(write_labelmap(labelmap, tmp_path / "plain.seg.nrrd"))
    assert [lab.name for lab in labels] == ["Segment_1", "Segment_2", "Segment_3"]
    with pytest.warns(UserWarning, match="no segment name"):
        write_segmentation(labelmap, LABELS[:1], tmp_path / "partial.seg.nrrd")
    _, labels = read_segmentation(tmp_path / "partial.seg.nrrd")
    assert [lab.name for lab in labels] == ["liver", "Segment_2", "Segment_3"]


def test_plain_labelmap_gets_default_labels(tmp_path: Path) -> None:
    path = write_labelmap(_labelmap(), tmp_path / "plain.nii.gz")
    _, labels = read_segmentation(path)
    assert labels == [SegmentLabel.default_for(v) for v in (1, 2, 3)]


def test_multilayer_seg_nrrd_is_refused(tmp_path: Path) -> None:
    layers = sitk.GetImageFromArray(np.zeros((3, 4, 5, 2), np.uint8), isVector=True)
    layers.SetMetaData("Segment0_LabelValue", "1")
    layers.SetMetaData("Segment0_Layer", "0")
    layers.SetMetaData("Segment1_LabelValue", "1")
    layers.SetMetaData("Segment1_Layer", "1")
    sitk.WriteImage(layers, str(tmp_path / "overlap.seg.nrrd"))
    with pytest.raises(InputError, match="overlapping") as error:
        read_segmentation(tmp_path / "overlap.seg.nrrd")
    _single_line_naming(error, "overlap.seg.nrrd")


def test_non_integer_labelmap_is_refused(tmp_path: Path) -> None:
    array = np.full((3, 4, 5), 0.5, np.float32)
    write_volume(Volume(array, Geometry.create(array.shape)), tmp_path / "prob.nii.gz")
    with pytest.raises(InputError) as error:
        read_labelmap(tmp_path / "prob.nii.gz")
    _single_line_naming(error, "prob.nii.gz")


# -- DICOM series -----------------------------------------------------------------------------


def _write_dicom_series(folder: Path, volume: Volume, series_uid: str, number: int = 1) -> None:
    """One file per slice, with the tags GDCM needs to rebuild the 3D grid."""
    folder.mkdir(exist_ok=True)
    geometry = volume.geometry
    direction = geometry.direction_matrix
    orientation = "\\".join(f"{v:.10f}" for v in np.concatenate([direction[:, 0], direction[:, 1]]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(geometry.shape[0]):
        slice_image = sitk.GetImageFromArray(volume.array[k])
        slice_image.SetSpacing(geometry.spacing[:2])
        position = geometry.ijk_to_lps(np.array([0.0, 0.0, k]))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.8.498.1",
            "0020|000e": series_uid,
            "0020|0011": str(number),
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.10f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{geometry.spacing[1]:.10f}\\{geometry.spacing[0]:.10f}",
            "0018|0050": f"{geometry.spacing[2]:.10f}",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{number}_{k:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_series_folder_keeps_geometry_and_picks_largest_series(tmp_path: Path) -> None:
    geometry = _oblique_geometry(shape=(5, 6, 7))
    array = (np.arange(np.prod(geometry.shape)).reshape(geometry.shape) * 3 - 100).astype(np.int16)
    volume = Volume(array, geometry)
    folder = tmp_path / "dicom"
    _write_dicom_series(folder, volume, "1.2.826.0.1.3680043.8.498.11")

    back = read_volume(folder)
    np.testing.assert_array_equal(back.array, array)
    assert back.geometry.same_grid(geometry, tolerance_mm=1e-3)

    small = Volume(array[:2].copy(), geometry.with_shape((2, 6, 7)))
    _write_dicom_series(folder, small, "1.2.826.0.1.3680043.8.498.22", number=2)
    with pytest.warns(UserWarning, match="2 DICOM series"):
        back = read_volume(folder)
    assert back.geometry.same_grid(geometry, tolerance_mm=1e-3)


# -- bad inputs -------------------------------------------------------------------------------


def _small_image(tmp_path: Path, name: str, shape=(8, 9, 10), dtype=np.float32) -> Path:
    array = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(tmp_path / name), useCompression=name.endswith(".nrrd"))
    return tmp_path / name


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _bad_missing(tmp_path):
    return tmp_path / "nowhere.nii.gz"


def _bad_text(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image\n")
    return tmp_path / "notes.txt"


def _bad_text_named_nifti(tmp_path):
    (tmp_path / "fake.nii").write_text("not an image either\n")
    return tmp_path / "fake.nii"


def _bad_truncated_nii(tmp_path):
    return _cut(_small_image(tmp_path, "cut.nii"), 0.8)


def _bad_truncated_nii_gz_stream(tmp_path):
    return _cut(_small_image(tmp_path, "cut.nii.gz"), 0.6)


def _bad_truncated_nii_gz_complete_stream(tmp_path):
    # A valid gzip stream around a short NIfTI: only the length check can see it.
    path = _small_image(tmp_path, "short.nii.gz")
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[: len(data) - 400]))
    return path


def _bad_truncated_nrrd(tmp_path):
    return _cut(_small_image(tmp_path, "cut.nrrd"), 0.7)


def _bad_truncated_raw_nrrd(tmp_path):
    path = tmp_path / "raw.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 9, 10), np.float32)), str(path), useCompression=False)
    return _cut(path, 0.9)


def _bad_truncated_mha(tmp_path):
    path = tmp_path / "cut.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 9, 10), np.float32)), str(path), useCompression=False)
    return _cut(path, 0.9)


def _bad_truncated_compressed_mha(tmp_path):
    path = tmp_path / "zcut.mha"
    noise = np.random.default_rng(1).random((8, 9, 10)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(noise), str(path), useCompression=True)
    return _cut(path, 0.8)


def _bad_truncated_mhd_data(tmp_path):
    path = tmp_path / "detached.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 9, 10), np.float32)), str(path), useCompression=False)
    _cut(tmp_path / "detached.raw", 0.5)
    return path


def _bad_nhdr_without_data(tmp_path):
    path = tmp_path / "header_only.nhdr"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 9, 10), np.float32)), str(path), useCompression=False)
    (tmp_path / "header_only.raw").unlink()
    return path


def _bad_2d(tmp_path):
    return _small_image(tmp_path, "slice.nrrd", shape=(9, 10))


def _bad_4d(tmp_path):
    frame = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))
    sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(tmp_path / "time.nrrd"))
    return tmp_path / "time.nrrd"


def _bad_vector(tmp_path):
    frame = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))
    sitk.WriteImage(sitk.Compose([frame, frame, frame]), str(tmp_path / "rgb.nii.gz"))
    return tmp_path / "rgb.nii.gz"


def _bad_empty_folder(tmp_path):
    (tmp_path / "empty_folder").mkdir()
    return tmp_path / "empty_folder"


BAD_INPUTS = {
    "missing": (_bad_missing, "no such file"),
    "text": (_bad_text, "not an image"),
    "text named .nii": (_bad_text_named_nifti, "not a NIfTI"),
    "truncated .nii": (_bad_truncated_nii, "truncated"),
    "truncated .nii.gz": (_bad_truncated_nii_gz_stream, "truncated"),
    "short .nii.gz": (_bad_truncated_nii_gz_complete_stream, "truncated"),
    "truncated .nrrd": (_bad_truncated_nrrd, "truncated"),
    "truncated raw .nrrd": (_bad_truncated_raw_nrrd, "truncated"),
    "truncated .mha": (_bad_truncated_mha, "truncated"),
    "truncated compressed .mha": (_bad_truncated_compressed_mha, "truncated"),
    "truncated .mhd data": (_bad_truncated_mhd_data, "truncated"),
    ".nhdr without data": (_bad_nhdr_without_data, "data file header_only.raw that does not exist"),
    "2D": (_bad_2d, "is a 2D image \\(10×9\\); a 3D volume is needed"),
    "4D": (_bad_4d, "has 4 dimensions"),
    "vector": (_bad_vector, "3 components per voxel"),
    "empty folder": (_bad_empty_folder, "without a DICOM series"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_input_error_naming_the_file(tmp_path: Path, case: str) -> None:
    make, pattern = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(InputError, match=pattern) as error:
        read_volume(path)
    _single_line_naming(error, path.name)
    with pytest.raises(InputError):
        read_segmentation(path)


def test_truncated_nifti_is_read_silently_by_simpleitk(tmp_path: Path) -> None:
    """Why the byte checks exist: if this starts failing, SimpleITK learned to refuse such files."""
    path = _bad_truncated_nii(tmp_path)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).shape == (8, 9, 10)


def test_2d_image_allowed_becomes_single_slice(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.arange(20, dtype=np.uint8).reshape(4, 5))
    image.SetSpacing((0.5, 0.25))
    sitk.WriteImage(image, str(tmp_path / "photo.png"))
    with pytest.raises(InputError, match="2D"):
        read_volume(tmp_path / "photo.png")
    volume = read_volume(tmp_path / "photo.png", allow_2d=True)
    assert volume.array.shape == (1, 4, 5)
    np.testing.assert_array_equal(volume.array[0], np.arange(20).reshape(4, 5))


# -- safe writes ------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["labelmap", "segmentation", "volume"])
def test_existing_output_is_kept_without_overwrite(tmp_path: Path, writer: str) -> None:
    name = "out.seg.nrrd" if writer == "segmentation" else "out.nii.gz"
    write = {
        "labelmap": lambda v, p, **kw: write_labelmap(v, p, **kw),
        "segmentation": lambda v, p, **kw: write_segmentation(v, LABELS, p, **kw),
        "volume": lambda v, p, **kw: write_volume(v, p, **kw),
    }[writer]
    path = tmp_path / name
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists") as error:
        write(_labelmap(), path)
    _single_line_naming(error, name)
    assert path.read_bytes() == b"precious"
    write(_labelmap(), path, overwrite=True)
    np.testing.assert_array_equal(read_labelmap(path).array, _labelmap().array)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ["out.png", "out.mhd", "out.nhdr", "out"])
def test_unknown_output_extension_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputError):
        write_labelmap(_labelmap(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".seg.nrrd"])
def test_failed_write_leaves_no_file(tmp_path: Path, ext: str) -> None:
    """A file-size limit makes the write fail half way (like a full disk); nothing may remain."""
    resource = pytest.importorskip("resource")  # POSIX only
    geometry = Geometry.create((20, 30, 40))
    noise = np.random.default_rng(0).integers(0, 200, size=geometry.shape).astype(np.uint8)
    volume = Volume(noise, geometry)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OutputError, match="cannot be written"):
            write_labelmap(volume, tmp_path / f"full{ext}")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name,compress",
    [("a/img.nhdr", False), ("b/img.nhdr", True), ("c/img.mhd", False), ("d/img.mha", True), ("e/img.nrrd", False)],
)
def test_complete_files_in_other_layouts_pass_the_length_checks(tmp_path: Path, name: str, compress: bool) -> None:
    path = tmp_path / name
    path.parent.mkdir()
    noise = np.random.default_rng(2).random((8, 9, 10)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(noise), str(path), useCompression=compress)
    np.testing.assert_array_equal(read_volume(path).array, noise)


def test_bad_segment_labels_and_metadata_are_refused(tmp_path: Path) -> None:
    labelmap = _labelmap()
    with pytest.raises(OutputError, match="two segments"):
        write_segmentation(labelmap, [SegmentLabel(1, "a"), SegmentLabel(1, "b")], tmp_path / "x.seg.nrrd")
    with pytest.raises(OutputError, match="metadata key"):
        write_segmentation(labelmap, LABELS, tmp_path / "x.seg.nrrd", extra_metadata={"a:b": "c"})
    with pytest.raises(OutputError, match="seg.nrrd"):
        write_segmentation(labelmap, LABELS, tmp_path / "x.nii.gz")
    assert list(tmp_path.iterdir()) == []
