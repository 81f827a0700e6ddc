"""A PNG overview of a segmentation: three orthogonal slices with the segments outlined.

Image and labels are shown on a RAS-aligned grid (anatomy upright, as radiologists expect),
through the centroid of the segmented voxels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import OutputError
from .io.staging import temporary_path
from .labels import SegmentLabel
from .volume import Volume

__all__ = ["write_overview"]


def write_overview(image: Volume, labelmap: Volume, labels: Sequence[SegmentLabel], path: Path,
                   title: Optional[str] = None) -> Path:
    """Write a 3-panel PNG (axial, coronal, sagittal) to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .inference.canonical import canonical_geometry, resample_to

    spacing = min(image.geometry.spacing)
    # Cap the display grid at about 256 voxels per axis.
    extent = np.ptp(image.geometry.corners_lps(), axis=0)
    spacing = max(spacing, float(extent.max()) / 256)
    grid = canonical_geometry(image.geometry, "RAS", (spacing,) * 3)
    img = resample_to(Volume(image.array.astype(np.float32), image.geometry), grid, order=1).array
    lab = resample_to(labelmap, grid, order=0).array
    centre = np.argwhere(lab > 0).mean(axis=0).round().astype(int) if lab.any() else np.array(lab.shape) // 2
    lo, hi = np.percentile(img, [1, 99.5])
    views = [("axial", img[centre[0]], lab[centre[0]]),  # k = S: rows j (A), columns i (R)
             ("coronal", img[:, centre[1]], lab[:, centre[1]]),
             ("sagittal", img[:, :, centre[2]], lab[:, :, centre[2]])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), facecolor="black")
    for ax, (name, slice_img, slice_lab) in zip(axes, views):
        # Radiological display: patient right on screen left, anterior/superior up.
        ax.imshow(slice_img, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="bilinear")
        for label in labels:
            mask = slice_lab == label.value
            if mask.any():
                ax.contourf(mask, levels=[0.5, 1.5], colors=[label.color], alpha=0.3, origin="lower")
                ax.contour(mask, levels=[0.5], colors=[label.color], linewidths=1.2, origin="lower")
        ax.invert_xaxis()  # RAS grid: i grows to the patient's right and j anteriorly; show them leftwards
        ax.set_title(name, color="white")
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=label.color) for label in labels]
    fig.legend(handles, [label.name for label in labels], loc="lower center", ncol=max(1, len(labels)),
               facecolor="black", labelcolor="white", frameon=False)
    if title:
        fig.suptitle(title, color="white")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, dpi=90, facecolor="black")
        os.replace(tmp, path)
    except OSError as error:
        raise OutputError(f"{path} cannot be written ({error.strerror or error})") from None
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path
