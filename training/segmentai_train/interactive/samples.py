"""Training samples for the interactive model: a patch, the object, and simulated prompts.

A sample is an image patch on an isotropic grid with one target object, from one of two sources:
real structures of permissively licensed volumes (resampled with a random rotation and a spacing
chosen as the session would choose it) and procedural shape phantoms. Prompts are simulated as
in DeepEdit/nnInteractive training: start from an empty or a degraded mask, add clicks in the
error regions (farthest from their boundary, or a random deep voxel), optionally iterate with the
network in the loop; some clicks become short scribbles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage

from segmentai_core.geometry import Geometry
from segmentai_core.inference.normalization import normalize
from segmentai_core.interaction.guidance import GUIDANCE_SIGMA_VOXELS, draw_points
from segmentai_core.interaction.prompts import polyline_samples
from segmentai_core.phantoms import rotation_matrix, shapes_phantom

from .clicker import next_click

__all__ = ["RealStructure", "ShapePool", "InteractiveSampler", "Click", "encode", "patch_grid", "resample_patch",
           "box_clicks", "simulate_thick_slices"]

NORMALIZATION = {"type": "percentile", "lower": 0.5, "upper": 99.5}


@dataclass
class Click:
    points_kji: np.ndarray  # (N, 3): one point, or the samples of a scribble
    positive: bool


@dataclass
class RealStructure:
    """One labelled structure of a real volume, kept as SimpleITK images for fast patch resampling."""

    name: str
    image: object  # SimpleITK float32 image
    mask: object  # SimpleITK float32 0/1 image
    low_lps: np.ndarray
    high_lps: np.ndarray
    foreground_lps: np.ndarray  # a subsample of object voxel positions

    @staticmethod
    def create(name: str, image, mask_array: np.ndarray, rng: np.random.Generator) -> "RealStructure":
        import SimpleITK as sitk

        geometry = Geometry.from_sitk(image)
        mask = sitk.GetImageFromArray(mask_array.astype(np.float32))
        mask.CopyInformation(image)
        kji = np.argwhere(mask_array > 0)
        lps = geometry.ijk_to_lps(kji[:, ::-1].astype(float))
        corners = geometry.ijk_to_lps(np.array([kji.min(0), kji.max(0)])[:, ::-1].astype(float))
        pick = rng.choice(len(lps), size=min(4000, len(lps)), replace=False)
        return RealStructure(name, sitk.Cast(image, sitk.sitkFloat32), mask, corners.min(0), corners.max(0), lps[pick])

    def patch(self, rng: np.random.Generator, size: int, base_spacing: float, view_size: int = 96,
              max_zoom: float = 2.0) -> Tuple[np.ndarray, np.ndarray]:
        """A (size³) patch and its mask on a randomly rotated grid, as the session would frame it."""
        import SimpleITK as sitk

        grid = patch_grid(rng, self.low_lps, self.high_lps, self.foreground_lps, size, base_spacing, view_size,
                          max_zoom)
        image = resample_patch(self.image, grid, sitk.sitkLinear, float(sitk.GetArrayViewFromImage(self.image).min()))
        return image, resample_patch(self.mask, grid, sitk.sitkLinear, 0.0) > 0.5


PatchGrid = Tuple[int, float, np.ndarray, np.ndarray]  # size, spacing (mm), origin (LPS), direction (3x3)


def patch_grid(rng: np.random.Generator, low_lps: np.ndarray, high_lps: np.ndarray, foreground_lps: np.ndarray,
               size: int, base_spacing: float, view_size: int = 96, max_zoom: float = 2.0) -> PatchGrid:
    """A randomly rotated isotropic grid framing an object's box as the session's working grid would.

    The spacing follows the session's zoom rule (object extent + margin over ``view_size`` voxels,
    between the base spacing and ``max_zoom`` times it); objects larger than the patch are entered
    at a random object voxel, smaller ones are centred with a small random shift.
    """
    extent = float((high_lps - low_lps).max()) + 24.0
    spacing = float(np.clip(extent / view_size * rng.uniform(0.9, 1.25), base_spacing * rng.uniform(0.85, 1.1),
                            base_spacing * max_zoom * 1.1))
    if extent / spacing <= size * 0.9:
        centre = (low_lps + high_lps) / 2 + rng.uniform(-0.12, 0.12, 3) * size * spacing
    else:
        centre = foreground_lps[rng.integers(len(foreground_lps))]
    direction = rotation_matrix(rng.normal(size=3), rng.uniform(0, np.pi)) if rng.random() < 0.7 else np.eye(3)
    origin = centre - direction @ np.full(3, (size - 1) * spacing / 2)
    return size, spacing, origin, direction


def resample_patch(image, grid: PatchGrid, interpolator: int, default: float) -> np.ndarray:
    """``image`` (SimpleITK) sampled on ``grid``, as a (k, j, i) array."""
    import SimpleITK as sitk

    size, spacing, origin, direction = grid
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([size] * 3)
    resampler.SetOutputSpacing([spacing] * 3)
    resampler.SetOutputOrigin(tuple(float(v) for v in origin))
    resampler.SetOutputDirection(tuple(float(v) for v in np.asarray(direction).ravel()))
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(default)
    return sitk.GetArrayFromImage(resampler.Execute(image))


class ShapePool:
    """A pool of shape phantoms, a few renewed each epoch (generation costs ~0.2 s each)."""

    def __init__(self, size: int, count: int, seed: int) -> None:
        self.size = size
        self.next_seed = seed
        self.items = [self._make() for _ in range(count)]

    def _make(self) -> Tuple[np.ndarray, np.ndarray]:
        image, labels = shapes_phantom((self.size,) * 3, seed=self.next_seed)
        self.next_seed += 1
        return image.array, labels.array

    def renew(self, count: int, rng: np.random.Generator) -> None:
        for _ in range(count):
            self.items[int(rng.integers(len(self.items)))] = self._make()

    def patch(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        for _ in range(20):
            image, labels = self.items[int(rng.integers(len(self.items)))]
            values, counts = np.unique(labels[labels > 0], return_counts=True)
            values = values[counts >= 40]
            if len(values):
                target = labels == rng.choice(values)
                break
        else:  # pragma: no cover - every phantom has a sizeable object in practice
            image, labels = self.items[0]
            target = labels > 0
        axes = rng.permutation(3)
        image, target = np.transpose(image, axes), np.transpose(target, axes)
        for axis in range(3):
            if rng.random() < 0.5:
                image, target = np.flip(image, axis), np.flip(target, axis)
        return np.ascontiguousarray(image), np.ascontiguousarray(target)


def _augment_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Augment a 0..1 normalised patch: gamma, inversion (class-agnostic about brightness), noise, blur."""
    if rng.random() < 0.4:
        image = np.clip(image, 0, 1) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.15:
        image = 1.0 - image
    if rng.random() < 0.3:
        image = image + rng.uniform(0.01, 0.06) * rng.standard_normal(image.shape).astype(np.float32)
    if rng.random() < 0.2:
        image = ndimage.gaussian_filter(image, rng.uniform(0.4, 1.0))
    return image.astype(np.float32)


def simulate_thick_slices(image: np.ndarray, axis: int, factor: float, offset: float = 0.0) -> np.ndarray:
    """``image`` as if acquired with slices ``factor`` times thicker along ``axis`` and resampled back to
    the working grid, as the session resamples a 5 mm-slice MRI or CT: each thick slice averages
    ``factor`` voxels, the first slice centre is at ``offset`` (0 <= offset < factor), and the grid
    between slice centres is filled by linear interpolation."""
    moved = np.moveaxis(image, axis, 0)
    length = moved.shape[0]
    averaged = ndimage.uniform_filter1d(moved, size=max(1, int(round(factor))), axis=0, mode="nearest")
    centres = np.arange(offset, length, factor)
    sampled = averaged[np.clip(np.rint(centres).astype(int), 0, length - 1)]
    positions = np.clip((np.arange(length) - offset) / factor, 0, len(centres) - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, len(centres) - 1)
    weight = (positions - low).reshape(-1, *([1] * (moved.ndim - 1))).astype(np.float32)
    resampled = sampled[low] * (1 - weight) + sampled[high] * weight
    return np.ascontiguousarray(np.moveaxis(resampled.astype(np.float32), 0, axis))


def _degrade(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong previous mask: eroded, dilated, shifted, smoothed, cut or grown."""
    kind = rng.choice(["erode", "dilate", "shift", "smooth", "cut", "grow"])
    if kind == "erode":
        return ndimage.binary_erosion(target, iterations=int(rng.integers(1, 4)))
    if kind == "dilate":
        return ndimage.binary_dilation(target, iterations=int(rng.integers(1, 4)))
    if kind == "shift":
        return np.roll(target, tuple(rng.integers(-5, 6, 3)), axis=(0, 1, 2))
    if kind == "smooth":
        return ndimage.gaussian_filter(target.astype(np.float32), rng.uniform(1.5, 4)) > rng.uniform(0.3, 0.7)
    if kind == "cut":
        coords = np.argwhere(target)
        if len(coords) == 0:
            return target.copy()
        normal = rng.normal(size=3)
        centre = coords[rng.integers(len(coords))]
        k, j, i = np.ogrid[: target.shape[0], : target.shape[1], : target.shape[2]]
        side = (k - centre[0]) * normal[0] + (j - centre[1]) * normal[1] + (i - centre[2]) * normal[2] > 0
        return target & side
    centre = rng.integers(0, target.shape[0], 3)
    k, j, i = np.ogrid[: target.shape[0], : target.shape[1], : target.shape[2]]
    ball = (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 < rng.uniform(4, 12) ** 2
    return target | (ball & ndimage.binary_dilation(target, iterations=6))


def _scribble_from(point: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A short straight stroke through ``point`` kept inside the error ``region``."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    t = np.arange(-rng.uniform(2, 10), rng.uniform(2, 10), 0.5)
    points = point + t[:, None] * direction
    index = np.rint(points).astype(int)
    ok = np.all((index >= 0) & (index < np.array(region.shape)), axis=1)
    points, index = points[ok], index[ok]
    return points[region[tuple(index.T)]] if len(points) else point[None].astype(float)


def _add_click(clicks: List[Click], prediction: np.ndarray, target: np.ndarray, rng: np.random.Generator,
               randomness: float) -> Optional[np.ndarray]:
    click = next_click(prediction, target, rng=rng, randomness=randomness)
    if click is None:
        return None
    point, positive = click
    if rng.random() < 0.15:
        region = target & ~prediction if positive else prediction & ~target
        clicks.append(Click(_scribble_from(point.astype(float), region, rng), positive))
    else:
        clicks.append(Click(point[None].astype(float), positive))
    return point


def box_clicks(target: np.ndarray, rng: np.random.Generator) -> List[Click]:
    """A 2D box drawn around the object on one slice, as the session turns it into guidance
    (``segmentai_core.interaction.prompts.box_prompts``): a positive click at the rectangle's
    centre and a negative outline along its edges on that slice."""
    axis = int(rng.integers(3))
    occupied = np.flatnonzero(np.moveaxis(target, axis, 0).any(axis=(1, 2)))
    # A slice through the middle part of the object, where a user would draw.
    middle = occupied[len(occupied) // 4: max(len(occupied) // 4 + 1, 3 * len(occupied) // 4)]
    index = int(rng.choice(middle))
    section = np.argwhere(np.moveaxis(target, axis, 0)[index])
    low = section.min(0) - rng.uniform(0, 2.5, 2)
    high = section.max(0) + rng.uniform(0, 2.5, 2)
    (u0, v0), (u1, v1) = low, high
    corners = np.insert(np.array([(u0, v0), (u1, v0), (u1, v1), (u0, v1), (u0, v0)]), axis, index, axis=1)
    outline = polyline_samples(corners, 1.0)  # the same sampling as the session's box_prompts
    centre = np.insert((low + high) / 2, axis, index)
    return [Click(centre[None], True), Click(outline, False)]


def encode(image: np.ndarray, previous: np.ndarray, clicks: Sequence[Click],
           sigma: float = GUIDANCE_SIGMA_VOXELS) -> np.ndarray:
    """The network input (4, k, j, i): image, previous mask, positive and negative guidance."""
    positive = np.zeros(image.shape, dtype=np.float32)
    negative = np.zeros(image.shape, dtype=np.float32)
    for click in clicks:
        draw_points(positive if click.positive else negative, click.points_kji, sigma)
    return np.stack([image, previous.astype(np.float32), positive, negative])


class InteractiveSampler:
    """Yields training batches {"image": (B, 4, s, s, s), "label": (B, 1, s, s, s)} forever."""

    def __init__(self, real: List[RealStructure], shapes: ShapePool, size: int = 64, batch_size: int = 2,
                 base_spacing: float = 1.5, real_fraction: float = 0.5, network: Optional[torch.nn.Module] = None,
                 loop_probability: float = 0.4, seed: int = 0, box_probability: float = 0.0,
                 thick_slice_probability: float = 0.0) -> None:
        self.real, self.shapes, self.size = real, shapes, size
        self.batch_size, self.base_spacing, self.real_fraction = batch_size, base_spacing, real_fraction
        self.network, self.loop_probability = network, loop_probability
        self.box_probability = box_probability  # share of fresh objects started by a 2D box instead of a click
        self.thick_slice_probability = thick_slice_probability  # share of images given simulated thick slices
        self.rng = np.random.default_rng(seed)

    def item(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[Click]]:
        """One (image, target, previous mask, clicks) before any network-in-the-loop round."""
        rng = self.rng
        if self.real and rng.random() < self.real_fraction:
            image, target = self.real[int(rng.integers(len(self.real)))].patch(rng, self.size, self.base_spacing)
            if target.sum() < 20:
                return self.item()
        else:
            image, target = self.shapes.patch(rng)
        image = _augment_intensity(normalize(image, NORMALIZATION), rng)
        if rng.random() < self.thick_slice_probability:
            # Clinical MRI and CT often have 3-7 mm slices: 2-4.5 working voxels at 1.5 mm.
            factor = float(rng.uniform(2.0, 4.5))
            image = simulate_thick_slices(image, int(rng.integers(3)), factor, float(rng.uniform(0, factor)))
        previous = np.zeros_like(target) if rng.random() < 0.45 else _degrade(target, rng)
        clicks: List[Click] = []
        if not previous.any():
            if rng.random() < self.box_probability:
                clicks.extend(box_clicks(target, rng))
            else:
                _add_click(clicks, previous, target, rng, randomness=0.5)
        # Extra clicks on the remaining errors; each "corrects" a ball around it for the next one.
        corrected = previous.copy()
        for _ in range(int(rng.choice([0, 0, 1, 1, 2, 3, 5, 8]))):
            point = _add_click(clicks, corrected, target, rng, randomness=0.5)
            if point is None:
                break
            k, j, i = np.ogrid[: target.shape[0], : target.shape[1], : target.shape[2]]
            ball = (k - point[0]) ** 2 + (j - point[1]) ** 2 + (i - point[2]) ** 2 <= 5 ** 2
            corrected = np.where(ball, target, corrected)
        return image, target, previous, clicks

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, torch.Tensor]:
        items = [self.item() for _ in range(self.batch_size)]
        inputs = [encode(image, previous, clicks) for image, _, previous, clicks in items]
        if self.network is not None and self.rng.random() < self.loop_probability:
            inputs = self._iterate(items, inputs, rounds=int(self.rng.integers(1, 3)))
        labels = np.stack([target[None] for _, target, _, _ in items]).astype(np.float32)
        return {"image": torch.from_numpy(np.stack(inputs)), "label": torch.from_numpy(labels)}

    def _iterate(self, items, inputs: List[np.ndarray], rounds: int) -> List[np.ndarray]:
        """Network in the loop: predict, take the prediction as the previous mask, click on its errors."""
        was_training = self.network.training
        self.network.eval()
        try:
            for _ in range(rounds):
                with torch.no_grad():
                    logits = self.network(torch.from_numpy(np.stack(inputs)))
                predictions = (logits.argmax(1).numpy() > 0)
                inputs = []
                for (image, target, _, clicks), prediction in zip(items, predictions):
                    _add_click(clicks, prediction, target, self.rng, randomness=0.3)
                    inputs.append(encode(image, prediction, clicks))
        finally:
            self.network.train(was_training)
        return inputs
