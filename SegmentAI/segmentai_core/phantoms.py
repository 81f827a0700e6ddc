"""Procedural phantoms: synthetic volumes with exact ground truth, for tests, demos and training.

Everything here is generated from a seed, so tests and benchmarks need no downloaded data and
the licence of the result is ours (Apache-2.0).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

from .geometry import Geometry
from .volume import Volume

__all__ = ["smooth_noise", "head_phantom", "blob_phantom", "rotation_matrix"]


def rotation_matrix(axis: Sequence[float], angle_rad: float) -> np.ndarray:
    """Rotation about ``axis`` by ``angle_rad`` (Rodrigues)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def smooth_noise(shape: Tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-8)


def head_phantom(
    shape: Tuple[int, int, int] = (96, 112, 96),
    spacing: float = 2.0,
    seed: int = 0,
    contrast: str = "T1",
) -> Tuple[Volume, Volume]:
    """A T1-like head: scalp, skull, CSF, cortex, white matter, ventricles; returns (image, brain mask).

    The grid is RAS-aligned (i → R, j → A, k → S) with the head near the centre; sizes, shape
    irregularities, tissue intensities, bias field and noise vary with ``seed``. The brain mask
    covers grey and white matter and the ventricles, as skull-stripping masks do.
    ``contrast="skull_stripped"`` zeroes everything outside the brain.
    """
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    centre = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-4, 4, 3)
    # Physical coordinates in mm relative to the head centre, array order (k=S, j=A, i=R).
    z, y, x = ((k - centre[0]) * spacing, (j - centre[1]) * spacing, (i - centre[2]) * spacing)
    rot = rotation_matrix(rng.normal(size=3), rng.uniform(-0.25, 0.25))
    x, y, z = (rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z,
               rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z,
               rot[2, 0] * x + rot[2, 1] * y + rot[2, 2] * z)
    semi = np.array([rng.uniform(62, 74), rng.uniform(80, 96), rng.uniform(66, 80)])  # x, y, z
    wobble = 1.0 + 0.05 * smooth_noise(shape, 12 / spacing, rng)
    radius = np.sqrt((x / semi[0]) ** 2 + (y / semi[1]) ** 2 + (z / semi[2]) ** 2) * wobble
    mean_semi = float(semi.mean())
    scalp_mm, skull_mm, csf_mm = rng.uniform(4, 8), rng.uniform(4, 8), rng.uniform(1.5, 4)
    r_skull = 1 - scalp_mm / mean_semi
    r_csf = r_skull - skull_mm / mean_semi
    r_brain = r_csf - csf_mm / mean_semi
    cortex = r_brain - rng.uniform(4, 7) / mean_semi + 0.02 * smooth_noise(shape, 3 / spacing, rng)
    ventricle = np.sqrt((x / 14) ** 2 + ((y - 5) / 30) ** 2 + ((z - 8) / 12) ** 2) < 1 + 0.2 * wobble - 0.2

    levels = {  # T1: fat bright, bone and CSF dark, WM brighter than GM
        "air": 0.02, "scalp": rng.uniform(0.65, 0.95), "skull": rng.uniform(0.05, 0.2),
        "csf": rng.uniform(0.08, 0.2), "gm": rng.uniform(0.38, 0.5), "wm": rng.uniform(0.6, 0.78),
    }
    image = np.full(shape, levels["air"], dtype=np.float32)
    image[radius < 1] = levels["scalp"]
    image[radius < r_skull] = levels["skull"]
    image[radius < r_csf] = levels["csf"]
    brain = radius < r_brain
    image[brain] = levels["gm"]
    image[radius < cortex] = levels["wm"]
    image[brain & ventricle] = levels["csf"]
    image *= 1 + 0.1 * smooth_noise(shape, 20 / spacing, rng)  # bias field
    image += 0.03 * smooth_noise(shape, 1.0, rng) + rng.uniform(0.01, 0.04) * rng.standard_normal(shape)
    image = ndimage.gaussian_filter(image, rng.uniform(0.3, 0.8))
    if contrast == "skull_stripped":
        image[~brain] = 0
    scale = rng.uniform(200, 3000)
    geometry = Geometry.create(shape, (spacing,) * 3, origin=(0.0, 0.0, 0.0), direction=np.diag([-1.0, -1.0, 1.0]))
    return Volume((image * scale).astype(np.float32), geometry), Volume(brain.astype(np.uint8), geometry)


def blob_phantom(
    shape: Tuple[int, int, int] = (48, 64, 56),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    direction: np.ndarray = np.eye(3),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    seed: int = 0,
) -> Tuple[Volume, Volume]:
    """A bright irregular blob in noise on any grid (oblique/anisotropic allowed); returns (image, mask).

    The object is defined in physical space, so two grids that sample the same space see the
    same object: useful for geometry tests.
    """
    rng = np.random.default_rng(seed)
    geometry = Geometry.create(shape, spacing, origin, direction)
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    lps = geometry.ijk_to_lps(np.stack([i, j, k], axis=-1).reshape(-1, 3)).reshape(tuple(shape) + (3,))
    centre = geometry.ijk_to_lps((np.array(geometry.size_ijk) - 1) / 2.0)
    rel = lps - centre
    extent = np.asarray(spacing) * np.asarray(geometry.size_ijk)
    semi = extent.min() * np.array([0.25, 0.3, 0.2])
    r = np.sqrt(((rel / semi) ** 2).sum(axis=-1)) + 0.15 * np.sin(rel[..., 0] / 3.0) * np.cos(rel[..., 2] / 4.0)
    mask = r < 1
    image = np.where(mask, 100.0, 20.0) + rng.normal(0, 5, shape)
    return Volume(image.astype(np.float32), geometry), Volume(mask.astype(np.uint8), geometry)
