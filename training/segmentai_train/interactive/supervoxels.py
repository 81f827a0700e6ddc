"""Class-agnostic training objects cut from real volumes: intensity-following supervoxels.

The permissively licensed volumes we may train on carry only a handful of labelled structures
(brain, grey and white matter), all large. To teach the interactive model to follow real tissue
boundaries at the sizes radiologists click on (nuclei, ventricles, lesions, muscles), each volume
is over-segmented with SLIC at several scales; any supervoxel (optionally merged with neighbours
of similar intensity) is a training object. No label of any other dataset is involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from scipy import ndimage
from segmentai_core.geometry import Geometry

from .samples import patch_grid, resample_patch

__all__ = ["SupervoxelVolume", "supervoxel_volume"]


@dataclass
class SupervoxelVolume:
    """One volume with a supervoxel label map; ``patch`` frames one (merged) supervoxel as the object."""

    name: str
    image: object  # SimpleITK float32 image
    labels: object  # SimpleITK uint32 label image on the same grid
    low_lps: np.ndarray  # (L + 1, 3) per label; row 0 unused
    high_lps: np.ndarray
    centre_lps: np.ndarray
    mean_intensity: np.ndarray  # (L + 1,) for merging neighbours of similar intensity
    neighbours: List[np.ndarray]  # label ids adjacent to each label

    def patch(self, rng: np.random.Generator, size: int, base_spacing: float, view_size: int = 96,
              max_zoom: float = 2.0) -> Tuple[np.ndarray, np.ndarray]:
        """A (size³) image patch and the mask of one random object, framed as the session would."""
        import SimpleITK as sitk

        chosen = self._pick_object(rng)
        low, high = self.low_lps[chosen].min(0), self.high_lps[chosen].max(0)
        grid = patch_grid(rng, low, high, self.centre_lps[chosen], size, base_spacing, view_size, max_zoom)
        image = resample_patch(self.image, grid, sitk.sitkLinear, float(sitk.GetArrayViewFromImage(self.image).min()))
        labels = resample_patch(self.labels, grid, sitk.sitkNearestNeighbor, 0)
        return image, np.isin(labels, chosen)

    def _pick_object(self, rng: np.random.Generator, tries: int = 30) -> np.ndarray:
        """A region of similar intensity with contrast along its border (supervoxels merged greedily).

        Starting from a random supervoxel, the most similar neighbour joins while it is close in mean
        intensity; the result is kept only when the neighbours left outside differ clearly (median
        contrast), so objects end at tissue boundaries rather than at SLIC's arbitrary cuts inside
        homogeneous tissue.
        """
        spread = float(np.std(self.mean_intensity[1:])) or 1.0
        best, best_contrast = np.array([1]), -1.0
        for _ in range(tries):
            seed = int(rng.integers(1, len(self.mean_intensity)))
            chosen = [seed]
            for _ in range(int(rng.integers(0, 12))):
                candidates = np.setdiff1d(np.concatenate([self.neighbours[c] for c in chosen]), chosen)
                if not len(candidates):
                    break
                gaps = np.abs(self.mean_intensity[candidates] - self.mean_intensity[chosen].mean())
                if gaps.min() > 0.3 * spread:
                    break
                chosen.append(int(candidates[np.argmin(gaps)]))
            outside = np.setdiff1d(np.concatenate([self.neighbours[c] for c in chosen]), chosen)
            if not len(outside):
                continue
            contrast = float(np.median(np.abs(self.mean_intensity[outside] - self.mean_intensity[chosen].mean())))
            contrast /= spread
            if contrast >= 0.5:
                return np.array(chosen)
            if contrast > best_contrast:
                best, best_contrast = np.array(chosen), contrast
        return best


def _adjacency(labels: np.ndarray, count: int) -> List[np.ndarray]:
    """Label ids touching each label (6-connectivity), from pairs of differing face neighbours."""
    pairs = []
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)[:-1].ravel()
        b = np.moveaxis(labels, axis, 0)[1:].ravel()
        differ = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([a[differ], b[differ]], axis=1))
    edges = np.unique(np.concatenate(pairs), axis=0)
    edges = np.concatenate([edges, edges[:, ::-1]])
    order = np.argsort(edges[:, 0], kind="stable")
    edges = edges[order]
    starts = np.searchsorted(edges[:, 0], np.arange(count + 2))
    return [np.unique(edges[starts[i]:starts[i + 1], 1]) for i in range(count + 1)]


def supervoxel_volume(name: str, image, mask: np.ndarray, segments: int = 1500, compactness: float = 0.1,
                      min_voxels: int = 200) -> SupervoxelVolume:
    """Over-segment ``image`` (SimpleITK) inside ``mask`` with SLIC into about ``segments`` supervoxels.

    One fine partition is stored; larger objects are unions of neighbouring supervoxels of similar
    intensity, drawn at sampling time. Supervoxels under ``min_voxels`` are dropped.
    """
    import SimpleITK as sitk
    from skimage.segmentation import slic

    array = sitk.GetArrayFromImage(image).astype(np.float32)
    scaled = (array - array[mask].min()) / max(float(np.ptp(array[mask])), 1e-6) * 255.0
    labels = slic(scaled, n_segments=int(segments), compactness=compactness, channel_axis=None, mask=mask,
                  start_label=1).astype(np.uint32)
    sizes = np.bincount(labels.ravel())
    small = sizes < min_voxels
    small[0] = False
    labels[small[labels]] = 0
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.uint32)  # 1..L compact
    count = int(labels.max())
    geometry = Geometry.from_sitk(image)
    boxes = ndimage.find_objects(labels)
    low = np.zeros((count + 1, 3))
    high = np.zeros((count + 1, 3))
    for index, box in enumerate(boxes, start=1):
        corners_kji = np.array([[s.start for s in box], [s.stop - 1 for s in box]], dtype=float)
        corners = geometry.ijk_to_lps(corners_kji[:, ::-1])
        low[index], high[index] = corners.min(0), corners.max(0)
    centres_kji = np.array(ndimage.center_of_mass(np.ones_like(labels), labels, np.arange(1, count + 1)))
    centres = np.zeros((count + 1, 3))
    centres[1:] = geometry.ijk_to_lps(centres_kji[:, ::-1])
    means = np.zeros(count + 1)
    means[1:] = ndimage.mean(array, labels, np.arange(1, count + 1))
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    return SupervoxelVolume(name, sitk.Cast(image, sitk.sitkFloat32), label_image, low, high, centres, means,
                            _adjacency(labels, count))
