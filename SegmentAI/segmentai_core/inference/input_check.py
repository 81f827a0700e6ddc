"""Does the input look like what the model was trained on? Warnings from intensity statistics.

A model segments whatever it is given: a binary mask fed to the T1 brain model comes back as
"Brain 1767.9 mL" without a word. These checks look at the image's values only (a sample of at
most about a million voxels, well under a second) and return readable warnings; they never
refuse, because unusual but valid images exist (a heavily quantised scan, a phantom).

- Any model: an image with only a handful of distinct values is a label map or mask rather than
  a scan (a constant image is refused by the engine itself).
- CT models: CT is stored in Hounsfield units, so air around the patient sits near -1000; an image
  without values below -500 is not in HU (an MR image, or intensities already rescaled).
- MR models: MR intensities are not negative to any extent; a fifth or more of the voxels at or
  below -500 with a floor near -1000 is a CT image in Hounsfield units.
"""

from __future__ import annotations

from typing import Any, List

import numpy as np

__all__ = ["input_warnings", "looks_like_hounsfield", "MASK_MAX_DISTINCT", "HOUNSFIELD_LOW"]

HOUNSFIELD_LOW = -300.0  # air, lung and bowel gas lie below it in CT; MR and PET are not negative beyond noise
MASK_MAX_DISTINCT = 8  # a scan has hundreds or thousands of distinct values; a label map a few
_SAMPLE = 1 << 20


def _sample(array: np.ndarray) -> np.ndarray:
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // _SAMPLE)
    sample = flat[::step]
    return sample[np.isfinite(sample)] if np.issubdtype(sample.dtype, np.floating) else sample


def _expected(manifest: Any) -> str:
    channels = [c for c in getattr(manifest, "input_channels", []) or [] if c and c.lower() != "image"]
    modality = getattr(manifest, "modality", "any")
    if modality == "any":
        return "a scan" + (f" ({channels[0]})" if channels else "")
    article = "an" if modality in ("MR", "NM") else "a"  # as spoken: an em-ar, a see-tee
    return f"{article} {modality} scan" + (f" ({channels[0]})" if channels else "")


def input_warnings(array: np.ndarray, manifest: Any) -> List[str]:
    """Warnings (possibly none) about ``array`` as input of the model described by ``manifest``."""
    sample = _sample(array)
    if sample.size == 0:
        return []
    model = f"model '{getattr(manifest, 'id', '?')}' expects {_expected(manifest)}"
    values = np.unique(sample)
    if values.size == 1:
        return []  # a constant image is refused by the engine, in one line
    if values.size <= MASK_MAX_DISTINCT:
        shown = ", ".join(f"{v:g}" for v in values[:MASK_MAX_DISTINCT])
        return [f"the image holds only {values.size} distinct values ({shown}): it looks like a label map or "
                f"mask, not a scan; {model}, so the result is likely meaningless"]
    modality = getattr(manifest, "modality", "any")
    low, floor = float(np.percentile(sample, 1)), float(sample.min())
    if modality == "CT" and floor > -500:
        return [f"no value below -500 (lowest {floor:g}): this does not look like CT in Hounsfield units, where "
                f"air is about -1000; {model}"]
    if modality == "MR" and float(np.mean(sample <= -500)) >= 0.2 and -1200 <= low <= -800:
        return [f"{100 * float(np.mean(sample <= -500)):.0f}% of the voxels are at or below -500 with a floor "
                f"near {low:.0f}: this looks like CT in Hounsfield units; {model}"]
    return []


def looks_like_hounsfield(array: np.ndarray) -> bool:
    """True when the image's lowest values lie below :data:`HOUNSFIELD_LOW`: CT in Hounsfield units
    (air, lung or bowel gas somewhere in view), not MR, PET or an image already rescaled."""
    sample = _sample(array)
    return bool(sample.size) and float(sample.min()) < HOUNSFIELD_LOW
