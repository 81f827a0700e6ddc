"""``segmentai refine``: output on the input's grid, RAS = IJK, and the shared error rules."""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.cli.main import main
from segmentai_core.io import read_labelmap, write_labelmap, write_volume
from segmentai_core.metrics import dice
from segmentai_core.phantoms import blob_phantom, rotation_matrix


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine")
    image, truth = blob_phantom(shape=(20, 36, 32), spacing=(1.2, 1.0, 2.5),
                                direction=rotation_matrix((0.3, 1.0, 0.2), 0.3), origin=(5.0, 3.0, -7.0))
    write_volume(image, folder / "image.nii.gz")
    write_labelmap(truth, folder / "truth.nii.gz")
    centre = np.argwhere(truth.array > 0).mean(axis=0)[::-1]
    return folder, image, truth, centre


def _triple(values) -> str:
    return ",".join(f"{v:.4f}" for v in values)


def test_refine_writes_mask_on_input_grid_and_ijk_matches_ras(case, capsys):
    folder, image, truth, centre = case
    background = centre + np.array([-12.0, 14.0, -5.0])
    ras_out, ijk_out = folder / "ras.nii.gz", folder / "ijk.nii.gz"
    ras = [_triple(image.geometry.ijk_to_ras(centre)), _triple(image.geometry.ijk_to_ras(background))]
    assert main(["refine", str(folder / "image.nii.gz"), "--fg", ras[0], f"--bg={ras[1]}", "-o", str(ras_out),
                 "--model", "random-walker"]) == 0
    assert main(["refine", str(folder / "image.nii.gz"), "--fg", _triple(centre), "--bg", _triple(background),
                 "--ijk", "-o", str(ijk_out), "--model", "random-walker"]) == 0
    first, second = read_labelmap(ras_out), read_labelmap(ijk_out)
    assert first.geometry.same_grid(image.geometry)
    np.testing.assert_array_equal(first.array, second.array)
    assert dice(first.array, truth.array) > 0.75
    assert "Wrote" in capsys.readouterr().err


def test_refine_from_a_mask(case):
    folder, image, truth, centre = case
    out = folder / "refined.nii.gz"
    assert main(["refine", str(folder / "image.nii.gz"), "--mask", str(folder / "truth.nii.gz"),
                 "--bg", _triple(centre + np.array([-12.0, 14.0, -5.0])), "--ijk", "-o", str(out),
                 "--model", "random-walker"]) == 0
    assert dice(read_labelmap(out).array, truth.array) > 0.9


def test_refine_timings_report_each_start_up_stage(case, capsys):
    """``--timings``: the stages a cold ``refine`` pays, apart (the interactive issue's "model loading
    and start-up reported separately"), as JSON on stdout; the mask is what the run wrote."""
    import json

    folder, image, truth, centre = case
    out = folder / "timed.nii.gz"
    capsys.readouterr()
    assert main(["refine", str(folder / "image.nii.gz"), "--fg", _triple(centre), "--ijk", "-o", str(out),
                 "--timings"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["timings_s"]) == {"read", "torch_import", "model_load", "interaction", "write"}
    assert all(value >= 0 for value in report["timings_s"].values())
    assert report["voxels"] == int(read_labelmap(out).array.sum()) > 0
    assert report["predictor"].startswith("hybrid:")  # the default engine, as in the Slicer panel


def test_refine_with_scribbles_matches_the_session(case):
    from segmentai_core.interaction import InteractionSession, RandomWalkerPredictor

    folder, image, truth, centre = case
    stroke = [centre + np.array([-4.0, 0.0, 0.0]), centre + np.array([4.0, 1.0, 0.0])]
    away = [centre + np.array([-12.0, 14.0, -5.0]), centre + np.array([-8.0, 15.0, -5.0])]
    out = folder / "scribbles.nii.gz"
    ras = ";".join(_triple(image.geometry.ijk_to_ras(p)) for p in stroke)
    assert main(["refine", str(folder / "image.nii.gz"), "--fg-scribble", ras,
                 "--bg-scribble", ";".join(_triple(image.geometry.ijk_to_ras(p)) for p in away),
                 "-o", str(out), "--model", "random-walker"]) == 0
    with InteractionSession(RandomWalkerPredictor()) as session:
        session.set_image(image)
        session.add_scribble(stroke, True, space="ijk")
        session.add_scribble(away, False, space="ijk")
        expected = session.mask.copy()
    result = read_labelmap(out).array
    np.testing.assert_array_equal(result, expected)
    assert dice(result, truth.array) > 0.75


@pytest.mark.parametrize("extra, message", [
    (["--fg-scribble", "1,2,3"], "two or more points"),
    (["--fg-scribble", "1,2,3;4,5"], "not 3 numbers"),
    (["--bg-scribble", "1,2,3;4,5,6"], "nothing to segment"),
    (["--fg", "1,2"], "not 3 numbers"),
    (["--fg", "a,b,c"], "not 3 numbers"),
    (["--box", "1,2,3"], "not 6 numbers"),
    ([], "nothing to segment"),
    (["--fg", "999,999,999", "--ijk"], "outside the image"),
    (["--fg", "1,1,1", "--model", "no-such-model"], "unknown model"),
    (["--fg", "1,1,1", "--mask", "OTHER"], "not on the grid"),
])
def test_refine_errors_are_one_line_and_write_nothing(case, tmp_path, capsys, extra, message):
    folder, image, truth, centre = case
    if "OTHER" in extra:
        other = tmp_path / "other.nii.gz"
        write_labelmap(_shifted(truth), other)
        extra = [str(other) if e == "OTHER" else e for e in extra]
    out = tmp_path / "out.nii.gz"
    code = main(["refine", str(folder / "image.nii.gz"), "-o", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".") or "out" in p.name]


def test_refine_refuses_existing_output(case, tmp_path, capsys):
    folder, image, truth, centre = case
    out = tmp_path / "exists.nii.gz"
    out.write_bytes(b"keep")
    code = main(["refine", str(folder / "image.nii.gz"), "--fg", _triple(centre), "--ijk", "-o", str(out)])
    assert code == 2 and "exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep"


def _shifted(volume):
    from segmentai_core.geometry import Geometry
    from segmentai_core.volume import Volume

    g = volume.geometry
    return Volume(volume.array, Geometry.create(g.shape, g.spacing, np.asarray(g.origin) + 5.0, g.direction_matrix))
