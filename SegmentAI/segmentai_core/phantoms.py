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

__all__ = ["smooth_noise", "head_phantom", "blob_phantom", "rotation_matrix", "shapes_phantom"]


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
    ``contrast="skull_stripped"`` zeroes everything outside the brain; ``contrast="T2"`` gives T2-like
    intensities (CSF bright, white matter darker than grey matter, fat intermediate) on the same anatomy.
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
    if contrast == "T2":  # CSF bright, WM darker than GM, fat intermediate; own stream keeps T1 draws unchanged
        t2 = np.random.default_rng([seed, 2])
        levels.update(scalp=t2.uniform(0.45, 0.65), skull=t2.uniform(0.03, 0.1), csf=t2.uniform(0.85, 1.0),
                      gm=t2.uniform(0.5, 0.62), wm=t2.uniform(0.3, 0.42))
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


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    return rotation_matrix(rng.normal(size=3), rng.uniform(0, np.pi))


def _ellipsoid(coords: np.ndarray, centre: np.ndarray, rng: np.random.Generator, lo: float, hi: float,
               wobble: float) -> np.ndarray:
    semi = rng.uniform(lo, hi, 3)
    rel = (coords - centre) @ _random_rotation(rng)
    radius = np.sqrt(((rel / semi) ** 2).sum(axis=-1))
    if wobble > 0:
        radius = radius * (1 + wobble * smooth_noise(coords.shape[:3], rng.uniform(3, 7), rng))
    return radius < 1


def _tube(shape: Tuple[int, int, int], centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A curved tube: a random smooth path through ``centre``, thickened by a distance threshold."""
    steps = rng.normal(size=(4, 3))
    steps /= np.linalg.norm(steps, axis=1, keepdims=True)
    length = rng.uniform(0.3, 0.7) * min(shape) / 2
    half = np.cumsum(steps[:2] * length, axis=0)
    other = np.cumsum(steps[2:] * length, axis=0)
    path = np.concatenate([(centre + other)[::-1], centre[None], centre + half])
    dense = [a + (b - a) * t for a, b in zip(path[:-1], path[1:]) for t in np.linspace(0, 1, 40)]
    marks = np.zeros(shape, dtype=bool)
    index = np.rint(np.array(dense)).astype(int)
    index = index[np.all((index >= 0) & (index < np.array(shape)), axis=1)]
    marks[tuple(index.T)] = True
    if not marks.any():
        marks[tuple(np.clip(np.rint(centre).astype(int), 0, np.array(shape) - 1))] = True
    return ndimage.distance_transform_edt(~marks) < rng.uniform(1.5, 5.0)


def _blob(shape: Tuple[int, int, int], coords: np.ndarray, centre: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """An irregular blob: thresholded smooth noise inside a ball, the part connected to the centre."""
    radius = rng.uniform(6, 20)
    inside = np.sqrt(((coords - centre) ** 2).sum(axis=-1)) < radius
    field = smooth_noise(shape, rng.uniform(2, 5), rng) + 1.5 * (1 - np.sqrt(((coords - centre) ** 2).sum(-1)) / radius)
    blob = inside & (field > rng.uniform(0.3, 0.9))
    labels, count = ndimage.label(blob)
    if count == 0:
        return inside
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def shapes_phantom(
    shape: Tuple[int, int, int] = (64, 64, 64),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    max_objects: int = 4,
) -> Tuple[Volume, Volume]:
    """Several objects of varied kinds (ellipsoids, curved tubes, irregular blobs, shells) on a textured
    background; returns (image, label map with one value per object, 1..N, touching objects allowed).

    Object sizes are in voxels. Contrasts, textures, bias field, blur and noise vary with ``seed``:
    sometimes an object is barely brighter than its surroundings, sometimes darker. Used to train
    and test class-agnostic interactive segmentation.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    coords = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij"), axis=-1)
    size = np.array(shape, dtype=float)
    background = rng.uniform(0.2, 0.8)
    image = background + rng.uniform(0.0, 0.15) * smooth_noise(shape, rng.uniform(1, 6), rng)
    labels = np.zeros(shape, dtype=np.uint8)
    count = int(rng.integers(1, max_objects + 1))
    for value in range(1, count + 1):
        centre = size / 2 + rng.uniform(-0.3, 0.3, 3) * size if value == 1 else rng.uniform(0.15, 0.85, 3) * size
        kind = rng.choice(["ellipsoid", "ellipsoid", "tube", "blob", "shell"])
        if kind == "tube":
            obj = _tube(shape, centre, rng)
        elif kind == "blob":
            obj = _blob(shape, coords, centre, rng)
        else:
            obj = _ellipsoid(coords, centre, rng, 4, min(shape) * 0.35, rng.uniform(0, 0.15))
            if kind == "shell":
                obj &= ~ndimage.binary_erosion(obj, iterations=int(rng.integers(2, 5)))
        if not obj.any():
            continue
        labels[obj] = value
        contrast = rng.choice([-1, 1]) * rng.uniform(0.06, 0.6)
        level = np.clip(background + contrast, 0.0, 1.2)
        texture = rng.uniform(0.0, 0.12) * smooth_noise(shape, rng.uniform(0.7, 3), rng)
        image = np.where(obj, level + texture, image)
    image = image * (1 + rng.uniform(0, 0.25) * smooth_noise(shape, 16, rng))  # bias field
    image = ndimage.gaussian_filter(image, rng.uniform(0.3, 1.2))
    image = image + rng.uniform(0.005, 0.08) * rng.standard_normal(shape)
    scale = float(rng.choice([1.0, 100.0, 1000.0]))
    geometry = Geometry.create(shape, spacing)
    return Volume((image * scale).astype(np.float32), geometry), Volume(labels, geometry)
