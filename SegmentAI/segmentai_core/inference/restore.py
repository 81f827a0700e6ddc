"""From canonical-grid probabilities back to a label map on the input's own grid.

Probabilities are resampled linearly (not labels: that would erode thin structures) slab by
slab along the input's k axis, so the full-resolution probability array never exists at once:
peak memory is one slab per class, however large the input.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..geometry import Geometry
from ..progress import Progress
from ..volume import Volume
from .canonical import _sitk_resample

__all__ = ["probabilities_to_labels"]


def probabilities_to_labels(
    probabilities: np.ndarray,
    canonical: Geometry,
    original: Geometry,
    label_values: Sequence[int],
    progress: Progress,
    slab_voxels: int = 8_000_000,
) -> np.ndarray:
    """Arg-max label map (values from ``label_values``; 0 = background) on ``original``'s grid."""
    import SimpleITK as sitk

    num_classes = probabilities.shape[0]
    dtype = np.uint8 if max(label_values, default=0) < 256 else np.uint16
    lookup = np.array([0] + list(label_values), dtype=dtype)
    # With two classes p0 = 1 - p1 before and after linear interpolation: one channel decides.
    channels = [1] if num_classes == 2 else list(range(num_classes))
    images = [Volume(probabilities[c], canonical).to_sitk() for c in channels]
    out = np.zeros(original.shape, dtype=dtype)
    slice_voxels = original.shape[1] * original.shape[2]
    slab = max(1, slab_voxels // max(1, slice_voxels))
    for k0 in range(0, original.shape[0], slab):
        k1 = min(original.shape[0], k0 + slab)
        target = original.cropped((k0, 0, 0), (k1, original.shape[1], original.shape[2]))
        # A copy, not GetArrayViewFromImage: a view of the temporary image would dangle.
        resampled = [
            sitk.GetArrayFromImage(_sitk_resample(image, target, sitk.sitkLinear, 1.0 if c == 0 else 0.0))
            for image, c in zip(images, channels)
        ]
        if num_classes == 2:
            out[k0:k1] = lookup[(resampled[0] > 0.5).astype(np.uint8)]
        else:
            out[k0:k1] = lookup[np.argmax(np.stack(resampled), axis=0)]
        progress.update(k1 / original.shape[0], "Resampling to the input grid")
    return out
