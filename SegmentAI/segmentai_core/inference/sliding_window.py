"""Sliding-window inference with weighted blending, the same arithmetic as MONAI's.

:func:`sliding_window_logits` gives, for the window plans SegmentAI uses (one image, one output,
constant or Gaussian blending), the same float32 values as ``monai.inferers.sliding_window_inference``
(same windows in the same order, the same importance map, the same sums; the tests compare them
exactly). It exists because importing ``monai`` costs 2.3-2.6 s on this project's 2-core machines
(``monai/__init__`` loads nearly every MONAI submodule, ignite and torch.distributed with them),
which every first ``segment`` of a process paid inside its network stage: ten times the network's
own 0.2 s on a 512x512x300 head (``cold_cli`` in ``bench/bench_segment.py``).

The windows: per axis, steps of ``int(window * (1 - overlap))`` voxels (the window itself where it
spans the axis), the last window moved back to end at the edge. An image smaller than the window is
padded with zeros, half before and half after, and cropped back at the end.
"""

from __future__ import annotations

import itertools
from typing import Callable, List, Sequence, Tuple

__all__ = ["importance_map", "window_starts", "sliding_window_logits"]


def window_starts(size: int, window: int, overlap: float) -> List[int]:
    """First index of each window along an axis of ``size`` voxels (``size >= window``)."""
    step = window if window == size else max(1, int(window * (1 - overlap)))
    starts = []
    start = 0
    while True:
        starts.append(start - max(start + window - size, 0))
        if start + window >= size:
            return starts
        start += step


def importance_map(window: Sequence[int], mode: str, sigma_scale, device="cpu"):
    """Per-voxel weight of a window's prediction: 1 (``constant``), or a Gaussian centred on the
    window with sigma ``sigma_scale * size`` per axis (``gaussian``), never below 1e-3 of its peak."""
    import torch

    if mode == "constant":
        weights = torch.ones(tuple(window), dtype=torch.float, device=device)
    elif mode == "gaussian":
        scales = list(sigma_scale) if isinstance(sigma_scale, (list, tuple)) else [sigma_scale] * len(window)
        weights = None
        for axis, (n, scale) in enumerate(zip(window, scales)):
            sigma = n * scale
            x = torch.arange(start=-(n - 1) / 2.0, end=(n - 1) / 2.0 + 1, dtype=torch.float, device=device)
            x = torch.exp(x ** 2 / (-2 * sigma ** 2))
            weights = x if weights is None else weights.unsqueeze(-1) * x[(None,) * axis]
    else:
        raise ValueError(f"unknown blend mode {mode!r} (constant or gaussian)")
    floor = max(torch.min(weights).item(), 1e-3)  # no voxel of a window is ignored
    return torch.clamp_(weights.to(torch.float), min=floor)


def _padding(shape: Sequence[int], window: Sequence[int]) -> List[Tuple[int, int]]:
    """Zeros before and after each axis so that it holds at least one window."""
    pads = []
    for n, w in zip(shape, window):
        missing = max(w - n, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


def sliding_window_logits(image, window: Sequence[int], batch_size: int, predictor: Callable, *,
                          overlap: float = 0.25, mode: str = "gaussian", sigma_scale=0.125,
                          device=None):
    """Blend ``predictor``'s outputs over windows of ``image`` (a (1, channels, *spatial) CPU tensor).

    ``predictor`` takes a batch of up to ``batch_size`` windows on ``device`` and returns their
    (batch, classes, *window) outputs there; the blended (1, classes, *spatial) result is float32 on
    the CPU, each voxel the importance-weighted mean of the windows that cover it.
    """
    import torch
    import torch.nn.functional as F

    window = tuple(int(w) for w in window)
    device = device or image.device
    original = tuple(image.shape[2:])
    pads = _padding(original, window)
    padded = any(before or after for before, after in pads)
    if padded:
        image = F.pad(image, [v for pair in reversed(pads) for v in pair], mode="constant", value=0.0)
    size = tuple(image.shape[2:])
    positions = list(itertools.product(*(window_starts(n, w, overlap) for n, w in zip(size, window))))
    regions = [tuple(slice(s, s + w) for s, w in zip(start, window)) for start in positions]
    weights = importance_map(window, mode, sigma_scale, device)[None, None]
    weights_cpu = weights.to("cpu")
    count = torch.zeros((1, 1) + size, dtype=image.dtype)
    for region in regions:
        count[(slice(None), slice(None)) + region] += weights_cpu
    output = None
    for first in range(0, len(regions), batch_size):
        group = regions[first:first + batch_size]
        batch = torch.cat([image[(slice(None), slice(None)) + region] for region in group]).to(device)
        logits = predictor(batch)
        logits *= weights
        logits = logits.to("cpu")
        if output is None:
            output = torch.zeros((1, logits.shape[1]) + size, dtype=image.dtype)
        for values, region in zip(logits, group):
            output[(slice(0, 1), slice(None)) + region] += values
    output /= count
    if padded:
        output = output[(slice(None), slice(None)) + tuple(slice(b, b + n) for (b, _), n in zip(pads, original))]
    return output
