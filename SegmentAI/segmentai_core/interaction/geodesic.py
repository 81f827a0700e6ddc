"""Seeded geodesic competition on image edges: each voxel takes the side (object or background) whose
seeds it reaches at the lower path cost, a path's cost being the sum of its steps' intensity changes
plus a small length term. This is the idea behind Slicer's Grow-from-seeds (a shortest-path GrowCut),
computed here by fast sweeping in numpy: alternating passes along each axis in both directions
(``passes`` rounds of six sweeps), each sweep a vectorised update of one slice from its neighbour,
so a 96³ grid costs a few tens of milliseconds and needs no compiled extension.

Sources may start at a cost (``init``) rather than at zero: a confident network prediction becomes a
weak seed that a click's cheap path can still overrule.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["edge_costs", "geodesic_distance", "competition", "with_voxel_cost"]


def edge_costs(image: np.ndarray, spacing_kji: Sequence[float] = (1.0, 1.0, 1.0), contrast: float = 1.0,
               length: float = 0.01, extra: Sequence[np.ndarray] = ()) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost of each step between neighbours along axes k, j, i (arrays one shorter along that axis):
    ``contrast`` × |intensity change| + ``length`` × step length in mm, plus |change| of each
    ``extra`` map (already weighted by the caller)."""
    costs = []
    for axis in range(3):
        step = np.abs(np.diff(image, axis=axis)) * np.float32(contrast)
        for other in extra:
            step += np.abs(np.diff(other, axis=axis))
        step += np.float32(length * spacing_kji[axis])
        costs.append(step.astype(np.float32, copy=False))
    return costs[0], costs[1], costs[2]


def _sweep(distance: np.ndarray, cost: np.ndarray, axis: int) -> None:
    """One forward and one backward sweep along ``axis``, in place."""
    d = np.moveaxis(distance, axis, 0)
    c = np.moveaxis(cost, axis, 0)
    scratch = np.empty(d.shape[1:], dtype=d.dtype)
    for n in range(1, d.shape[0]):
        np.add(d[n - 1], c[n - 1], out=scratch)
        np.minimum(d[n], scratch, out=d[n])
    for n in range(d.shape[0] - 2, -1, -1):
        np.add(d[n + 1], c[n], out=scratch)
        np.minimum(d[n], scratch, out=d[n])


def geodesic_distance(init: np.ndarray, costs: Tuple[np.ndarray, np.ndarray, np.ndarray],
                      passes: int = 3) -> np.ndarray:
    """Lowest path cost from any source (``init``: the cost to start at each voxel, ``inf`` where none).

    Paths that turn back along an axis more than ``passes`` times are approximated by longer ones."""
    distance = np.array(init, dtype=np.float32, copy=True)
    if not np.isfinite(distance).any():
        return distance
    for _ in range(passes):
        for axis in range(3):
            if distance.shape[axis] > 1:
                _sweep(distance, costs[axis], axis)
    return distance


def with_voxel_cost(costs: Tuple[np.ndarray, np.ndarray, np.ndarray],
                    voxel_cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step costs plus the mean of a per-voxel cost at the step's two ends (a region term: entering a
    voxel unlike the object costs its ``voxel_cost``, whatever the edges on the way)."""
    out = []
    for axis, cost in enumerate(costs):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        out.append((cost + np.float32(0.5) * (voxel_cost[tuple(lo)] + voxel_cost[tuple(hi)])).astype(np.float32))
    return out[0], out[1], out[2]


def competition(object_init: np.ndarray, background_init: np.ndarray,
                costs: Tuple[np.ndarray, np.ndarray, np.ndarray], passes: int = 3,
                object_costs: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """Soft object map in 0..1: ``d_bg / (d_fg + d_bg)`` (above 0.5 where the object's seeds are nearer).

    ``object_costs``: the object's paths use these step costs instead of ``costs`` (a region term)."""
    d_fg = geodesic_distance(object_init, costs if object_costs is None else object_costs, passes)
    d_bg = geodesic_distance(background_init, costs, passes)
    big = np.float32(1e6)
    d_fg = np.minimum(d_fg, big)
    d_bg = np.minimum(d_bg, big)
    total = d_fg + d_bg
    with np.errstate(invalid="ignore", divide="ignore"):
        soft = np.where(total > 0, d_bg / np.maximum(total, np.float32(1e-12)), np.float32(0.5))
    return soft.astype(np.float32)
