"""Guidance maps: prompts drawn as small Gaussian balls on the working grid (one channel for the
object, one for the background), the encoding the interactive model was trained with."""

from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np

from ..geometry import Geometry, points_ijk_to_kji
from .prompts import Prompt, polyline_samples

__all__ = ["GUIDANCE_SIGMA_VOXELS", "draw_points", "guidance_maps", "prompt_points_on_grid"]

GUIDANCE_SIGMA_VOXELS = 1.5
"""Standard deviation of a click's Gaussian on the working grid (truncated at 3 sigma)."""


def draw_points(channel: np.ndarray, points_kji: np.ndarray, sigma: float = GUIDANCE_SIGMA_VOXELS) -> np.ndarray:
    """Draw Gaussians (peak 1) at continuous (k, j, i) positions into ``channel`` by maximum, in place.

    Points outside the grid are skipped; each Gaussian touches only its own small box, so a long
    scribble costs a few thousand voxels per point, not a full-volume pass.
    """
    radius = int(np.ceil(3 * sigma))
    shape = np.array(channel.shape)
    for point in np.asarray(points_kji, dtype=float).reshape(-1, 3):
        centre = np.rint(point).astype(int)
        if np.any(centre < -radius) or np.any(centre >= shape + radius):
            continue
        lo = np.maximum(centre - radius, 0)
        hi = np.minimum(centre + radius + 1, shape)
        if np.any(hi <= lo):
            continue
        axes = [np.arange(a, b, dtype=np.float32) - np.float32(p) for a, b, p in zip(lo, hi, point)]
        d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        blob = np.exp(-d2 / np.float32(2 * sigma * sigma))
        view = channel[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(view, blob, out=view)
    return channel


def prompt_points_on_grid(prompt: Prompt, source: Geometry, target: Geometry) -> np.ndarray:
    """The prompt's points (scribbles densely sampled) as continuous (k, j, i) indices of ``target``."""
    points = prompt.array
    if prompt.kind == "scribble":
        # Sample in the target's voxels: half a working voxel between points keeps the line solid.
        step_ijk = 0.5 * min(target.spacing) / max(min(source.spacing), 1e-6)
        points = polyline_samples(points, max(0.05, step_ijk))
    ijk = target.lps_to_ijk(source.ijk_to_lps(points))
    return points_ijk_to_kji(ijk)


def guidance_maps(prompts: Iterable[Prompt], source: Geometry, target: Geometry,
                  sigma: float = GUIDANCE_SIGMA_VOXELS) -> Tuple[np.ndarray, np.ndarray]:
    """Positive and negative guidance channels (float32, ``target.shape``) for point/scribble prompts."""
    positive = np.zeros(target.shape, dtype=np.float32)
    negative = np.zeros(target.shape, dtype=np.float32)
    for prompt in prompts:
        draw_points(positive if prompt.positive else negative, prompt_points_on_grid(prompt, source, target), sigma)
    return positive, negative
