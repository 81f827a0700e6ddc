"""``segmentai refine --roi``: the hybrid engine bounded by a box drawn around the object, as the
Slicer panel and the web app use it; ``--network-only`` keeps the network alone."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.cli.main import main
from segmentai_core.io import read_labelmap, write_labelmap, write_volume
from segmentai_core.metrics import dice
from segmentai_core.phantoms import blob_phantom


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roi")
    image, truth = blob_phantom(shape=(40, 48, 44), spacing=(1.5, 1.5, 1.5), seed=4)
    write_volume(image, folder / "image.nii.gz")
    write_labelmap(truth, folder / "truth.nii.gz")
    inside = np.argwhere(truth.array > 0)
    return folder, truth, inside


def _ijk(values) -> str:
    return ",".join(str(int(v)) for v in values)


def test_roi_bounds_the_result_and_helps(case, capsys):
    folder, truth, inside = case
    centre = inside.mean(axis=0).round()[::-1]
    low, high = inside.min(axis=0)[::-1] - 3, inside.max(axis=0)[::-1] + 3
    out = folder / "roi.nii.gz"
    code = main(["refine", str(folder / "image.nii.gz"), "--ijk", "--fg", _ijk(centre),
                 "--roi", _ijk(low) + "," + _ijk(high), "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    result = read_labelmap(out).array > 0
    box = np.zeros_like(result)
    box[low[2]:high[2] + 1, low[1]:high[1] + 1, low[0]:high[0] + 1] = True
    assert not (result & ~box).any()  # outside the ROI is background
    assert dice(result, truth.array > 0) > 0.8
    assert "hybrid:" in capsys.readouterr().err


def test_network_only_and_bad_roi(case, capsys):
    folder, _, inside = case
    centre = _ijk(inside.mean(axis=0).round()[::-1])
    out = folder / "net.nii.gz"
    assert main(["refine", str(folder / "image.nii.gz"), "--ijk", "--fg", centre, "--network-only",
                 "-o", str(out)]) == 0
    assert "hybrid:" not in capsys.readouterr().err
    code = main(["refine", str(folder / "image.nii.gz"), "--ijk", "--fg", centre, "--roi", "500,500,500,600,600,600",
                 "-o", str(folder / "bad.nii.gz")])
    err = capsys.readouterr().err
    assert code == 2 and "outside the image" in err and len(err.strip().splitlines()) == 1
    assert not (folder / "bad.nii.gz").exists()
