"""``segmentai refine --mask x.seg.nrrd``: the refined segmentation keeps everything it came with.

One segment is refined; the others keep their voxels, every segment keeps its name, colour and
terminology, and the file's other metadata (provenance) is written back (issue 16, item 4).
"""

from __future__ import annotations

import numpy as np
import pytest

from segmentai_core.cli.main import main
from segmentai_core.io import read_segmentation, write_segmentation, write_volume
from segmentai_core.io.file_checks import read_nrrd_header
from segmentai_core.labels import Code, SegmentLabel, Terminology
from segmentai_core.phantoms import blob_phantom

BRAIN = SegmentLabel(1, "Brain", (0.86, 0.69, 0.45),
                     Terminology(Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "12738006", "Brain")))
SLAB = SegmentLabel(2, "Slab", (0.2, 0.4, 0.9),
                    Terminology(Code("SCT", "49755003", "Morphologically Altered Structure"),
                                Code("SCT", "4147007", "Mass")))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine-seg")
    image, truth = blob_phantom(shape=(20, 36, 32), spacing=(1.2, 1.0, 2.5))
    write_volume(image, folder / "image.nii.gz")
    labels = (truth.array > 0).astype(np.uint8)
    k0 = int(np.argwhere(labels).mean(axis=0)[0])
    labels[k0 + 2:k0 + 4] = np.where(labels[k0 + 2:k0 + 4] > 0, 2, 0)  # a slab of the object belongs to "Slab"
    labels[:2, :4, :4] = 2  # and a corner far from it
    rough = labels.copy()
    rough[(labels == 1) & (np.indices(labels.shape)[2] < 12)] = 0  # Brain's left part is missing
    write_segmentation(truth.with_array(rough), [BRAIN, SLAB], folder / "two.seg.nrrd",
                       extra_metadata={"SegmentAI_Model": "brain-t1-extraction@1.0.0"})
    single = np.where(rough == 1, 1, 0).astype(np.uint8)
    write_segmentation(truth.with_array(single), [BRAIN], folder / "brain.seg.nrrd")
    centre = np.argwhere(labels == 1).mean(axis=0)[::-1]  # i, j, k
    return folder, image, rough, centre


def _click(centre) -> np.ndarray:
    return np.array([centre[0] - 6.0, centre[1], centre[2]])  # i, j, k in the missing part of Brain


def _expected(image, rough, centre) -> np.ndarray:
    """Brain after the click, from the session itself (the other segments' voxels protected)."""
    from segmentai_core.interaction import InteractionSession, RandomWalkerPredictor

    with InteractionSession(RandomWalkerPredictor()) as session:
        session.set_image(image)
        session.set_target(rough == 1, protected=rough == 2)
        session.add_point(_click(centre), positive=True, space="ijk")
        return session.mask.astype(bool) & (rough != 2)


def _triple(values) -> str:
    return ",".join(f"{v:.4f}" for v in values)


def _refine(folder, mask, out, centre, *extra) -> int:
    return main(["refine", str(folder / "image.nii.gz"), "--mask", str(folder / mask), "--fg", _triple(_click(centre)),
                 "--ijk", "-o", str(out), "--model", "random-walker", *extra])


def test_single_segment_keeps_name_colour_and_terminology(case, tmp_path):
    folder, image, rough, centre = case
    out = tmp_path / "refined.seg.nrrd"
    assert _refine(folder, "brain.seg.nrrd", out, centre) == 0
    volume, segments = read_segmentation(out)
    assert segments == [BRAIN]  # was Segment_1 with a generic colour and no terminology
    assert set(np.unique(volume.array)) <= {0, 1}
    i, j, k = np.rint(_click(centre)).astype(int)
    assert volume.array[k, j, i] == 1 and rough[k, j, i] == 0  # the click refined Brain


def test_other_segments_and_metadata_are_kept(case, tmp_path, capsys):
    folder, image, rough, centre = case
    out = tmp_path / "refined.seg.nrrd"
    assert _refine(folder, "two.seg.nrrd", out, centre, "--segment", "Brain") == 0
    assert "segment 'Brain'" in capsys.readouterr().err
    volume, segments = read_segmentation(out)
    assert segments == [BRAIN, SLAB]
    np.testing.assert_array_equal(volume.array == 2, rough == 2)  # Slab untouched
    np.testing.assert_array_equal(volume.array == 1, _expected(image, rough, centre))
    assert (volume.array == 1).sum() > (rough == 1).sum()
    header = read_nrrd_header(out).keyvalues
    assert header["SegmentAI_Model"] == "brain-t1-extraction@1.0.0"
    assert header["Segment0_Name"] == "Brain" and header["Segment1_Name"] == "Slab"
    # By label value, and into a plain label map: the values stay those of the segments.
    plain = tmp_path / "refined.nii.gz"
    assert _refine(folder, "two.seg.nrrd", plain, centre, "--segment", "1") == 0
    np.testing.assert_array_equal(read_segmentation(plain)[0].array, volume.array)


@pytest.mark.parametrize("extra, message", [
    ([], "holds 2 segments ('Brain' (1), 'Slab' (2)): choose the one to refine with --segment"),
    (["--segment", "Liver"], "--segment 'Liver':"),
])
def test_which_segment_is_asked_for_in_one_line(case, tmp_path, capsys, extra, message):
    folder, image, rough, centre = case
    out = tmp_path / "refined.seg.nrrd"
    assert _refine(folder, "two.seg.nrrd", out, centre, *extra) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_segment_needs_a_mask(case, tmp_path, capsys):
    folder, image, rough, centre = case
    out = tmp_path / "x.seg.nrrd"
    assert main(["refine", str(folder / "image.nii.gz"), "--fg", _triple(centre), "--ijk", "--segment", "Brain",
                 "-o", str(out), "--model", "random-walker"]) != 0
    assert "--segment chooses a segment of --mask" in capsys.readouterr().err and not out.exists()
