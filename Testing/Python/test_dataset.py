"""Training datasets in nnU-Net v2 raw layout: add (API and CLI), list, validate, never overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segmentai_core.cli.main import main
from segmentai_core.dataset import add_case, list_cases, load_dataset, validate_dataset
from segmentai_core.dataset.layout import image_path, label_path
from segmentai_core.errors import InputError
from segmentai_core.geometry import Geometry
from segmentai_core.io import read_volume, write_labelmap, write_segmentation, write_volume
from segmentai_core.labels import SegmentLabel
from segmentai_core.phantoms import blob_phantom
from segmentai_core.volume import Volume

SHAPE = (20, 24, 22)


def _case(seed: int = 0):
    return blob_phantom(shape=SHAPE, spacing=(1.5, 1.2, 1.0), seed=seed)


def test_add_case_writes_nnunet_layout_with_provenance(tmp_path):
    image, mask = _case()
    folder = tmp_path / "ds"
    first = add_case(folder, image, mask, {1: "Tumor"}, {"draft_model": "m@1.0.0"}, channel_names=["T1"])
    second = add_case(folder, *_case(1), [SegmentLabel(1, "tumor")])  # names match case-insensitively
    assert (first, second) == ("case_0001", "case_0002")
    data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    assert data["labels"] == {"background": 0, "Tumor": 1}
    assert data["channel_names"] == {"0": "T1"} and data["numTraining"] == 2 and data["file_ending"] == ".nii.gz"
    stored = read_volume(image_path(folder, first))
    assert stored.geometry.same_grid(image.geometry) and np.allclose(stored.array, image.array)
    assert np.array_equal(read_volume(label_path(folder, first)).array, mask.array)
    record = json.loads((folder / "provenance" / "case_0001.json").read_text(encoding="utf-8"))
    assert record["draft_model"] == "m@1.0.0" and len(record["label"]["sha256"]) == 64 and record["added"]
    assert [c.case_id for c in list_cases(folder)] == ["case_0001", "case_0002"]
    assert validate_dataset(folder) == []
    assert not list((folder / "imagesTr").glob(".*"))  # no temporary files left


def test_add_never_overwrites_and_maps_values_by_name(tmp_path):
    folder = tmp_path / "ds"
    image, mask = _case()
    add_case(folder, image, mask.with_array(mask.array * 2), {2: "Liver"})
    # A stray label file takes case_0002: the next case must skip it, not overwrite it.
    write_labelmap(mask, label_path(folder, "case_0002"))
    before = label_path(folder, "case_0002").read_bytes()
    case_id = add_case(folder, image, mask.with_array(mask.array * 5), {5: "liver"}, allow_duplicate=True)
    assert case_id == "case_0003" and label_path(folder, "case_0002").read_bytes() == before
    assert set(np.unique(read_volume(label_path(folder, case_id)).array)) == {0, 2}  # 5 → dataset value 2


def test_add_refuses_bad_cases(tmp_path):
    folder = tmp_path / "ds"
    image, mask = _case()
    add_case(folder, image, mask, {1: "Tumor"})
    with pytest.raises(InputError, match="not a label of dataset"):
        add_case(folder, image, mask, {1: "Kidney"})
    with pytest.raises(InputError, match="empty"):
        add_case(folder, image, mask.with_array(np.zeros_like(mask.array)), {1: "Tumor"})
    other = Geometry.create(SHAPE, (2.0, 2.0, 2.0))
    with pytest.raises(InputError, match="grid"):
        add_case(folder, image, Volume(mask.array, other), {1: "Tumor"})
    assert len(list_cases(folder)) == 1


def test_cli_add_list_validate(tmp_path, capsys):
    image, mask = _case()
    write_volume(image, tmp_path / "img.nrrd")
    write_segmentation(mask, [SegmentLabel(1, "Brain")], tmp_path / "seg.seg.nrrd")
    write_labelmap(mask, tmp_path / "plain.nii.gz")
    write_volume(_case(1)[0], tmp_path / "img2.nrrd")
    folder = tmp_path / "ds"
    assert main(["dataset", "add", str(tmp_path / "img.nrrd"), str(tmp_path / "seg.seg.nrrd"), "--dataset",
                 str(folder), "--model-id", "brain-t1-extraction@1.0.0"]) == 0
    assert main(["dataset", "add", str(tmp_path / "img.nrrd"), str(tmp_path / "plain.nii.gz"), "--dataset",
                 str(folder), "--labels", "1=Brain"]) == 2  # the same image twice
    assert main(["dataset", "add", str(tmp_path / "img2.nrrd"), str(tmp_path / "plain.nii.gz"), "--dataset",
                 str(folder), "--labels", "1=Brain"]) == 0
    assert load_dataset(folder).labels == {"background": 0, "Brain": 1}
    record = json.loads((folder / "provenance" / "case_0001.json").read_text(encoding="utf-8"))
    assert record["draft_model"] == "brain-t1-extraction@1.0.0" and record["source_segmentation"]["sha256"]
    capsys.readouterr()
    assert main(["dataset", "list", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 case(s)" in out and "case_0002" in out
    assert main(["dataset", "validate", str(folder)]) == 0
    assert main(["dataset", "add", str(tmp_path / "img.nrrd"), str(tmp_path / "plain.nii.gz"), "--dataset",
                 str(folder), "--labels", "one=Brain"]) == 2


def test_validate_reports_each_problem_on_one_line(tmp_path, capsys):
    folder = tmp_path / "ds"
    image, mask = _case()
    for seed in range(3):
        add_case(folder, *_case(seed), {1: "Tumor"})
    moved = Geometry.create(SHAPE, (1.0, 1.2, 1.5), origin=(5.0, 0.0, 0.0))
    write_labelmap(Volume(mask.array, moved), label_path(folder, "case_0001"), overwrite=True)
    write_labelmap(mask.with_array(mask.array * 3), label_path(folder, "case_0002"), overwrite=True)
    write_labelmap(mask.with_array(np.zeros_like(mask.array)), label_path(folder, "case_0003"), overwrite=True)
    write_volume(image, image_path(folder, "case_0004"))
    problems = validate_dataset(folder)
    text = "\n".join(problems)
    assert "case_0001.nii.gz: geometry differs" in text
    assert "case_0002.nii.gz: label value(s) 3 not in dataset.json" in text
    assert "case_0003.nii.gz: empty label map" in text
    assert "case_0004_0000.nii.gz: image has no label file" in text
    assert all("\n" not in p for p in problems)
    capsys.readouterr()
    assert main(["dataset", "validate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "problem(s) found" in err and "geometry differs" in err
    assert main(["dataset", "validate", str(tmp_path / "missing")]) == 2
