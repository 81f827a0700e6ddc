"""nnU-Net's sliding-window prediction (Gaussian blending, step 0.5, mirroring), batched.

The same windows, weights and mirror combinations as nnU-Net's predictor, so the logits agree
to float precision; the speed comes from running several windows per forward pass (nnU-Net
runs one) and from keeping the sums on the host (in nnU-Net's float16, for bit-level agreement).

A 2D configuration (a patch with one item fewer than the volume) runs as nnU-Net runs it: the
volume is padded in-plane only, and every slice along the first (model) axis is covered by its
own 2D windows — the same in-plane starts for every slice — with a 2D Gaussian and 2D mirroring.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np

from ..progress import Progress
from .windows import forward

__all__ = ["window_starts", "gaussian_weights", "window_slicers", "predict_logits"]


def window_starts(size: Sequence[int], patch: Sequence[int], step: float) -> List[List[int]]:
    """Start index of every window along each axis: evenly spread, at most ``step × patch`` apart."""
    starts = []
    for length, window in zip(size, patch):
        count = int(np.ceil((length - window) / (window * step))) + 1
        stride = (length - window) / (count - 1) if count > 1 else 0.0
        starts.append([int(np.round(stride * n)) for n in range(count)])
    return starts


@lru_cache(maxsize=4)
def gaussian_weights(patch: Tuple[int, ...], dtype: str = "float16", sigma_scale: float = 1.0 / 8,
                     peak: float = 10.0) -> np.ndarray:
    """Blending weights: a Gaussian centred on the patch (sigma = patch/8), peak ``peak``, no zeros.

    Rounded to ``dtype`` *before* zeros are replaced by the smallest weight, as nnU-Net does: in
    float16 the far corners underflow, and the blended values there depend on that detail.
    """
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(patch)
    impulse[tuple(n // 2 for n in patch)] = 1.0
    weights = gaussian_filter(impulse, [n * sigma_scale for n in patch], 0, mode="constant", cval=0)
    weights = (weights / (weights.max() / peak)).astype(dtype)
    weights[weights == 0] = weights[weights > 0].min()
    return weights


def window_slicers(shape: Sequence[int], patch: Sequence[int], step: float) -> List[Tuple]:
    """Spatial index tuples of every window over ``shape``, in nnU-Net's order.

    3D patch: ``(slice, slice, slice)``. 2D patch on a 3D volume: ``(d, slice, slice)`` for each
    slice index ``d`` of the first axis (outermost), then the in-plane starts, as nnU-Net's
    predictor builds them; the order matters for the float16 sums only within a slice.
    """
    extra = len(shape) - len(patch)
    if extra not in (0, 1):
        raise ValueError(f"patch {tuple(patch)} does not fit a volume of shape {tuple(shape)}")
    starts = window_starts(shape[extra:], patch, step)
    leading = [range(shape[0])] if extra else []
    slicers = []
    for corner in itertools.product(*leading, *starts):
        fixed, moving = corner[:extra], corner[extra:]
        slicers.append(tuple(fixed) + tuple(slice(c, c + p) for c, p in zip(moving, patch)))
    return slicers


def _mirror_sets(axes: Sequence[int]) -> List[Tuple[int, ...]]:
    """Every non-empty subset of the mirror axes, as tensor dims (batch and channel come first)."""
    dims = [a + 2 for a in axes]
    return [c for n in range(1, len(dims) + 1) for c in itertools.combinations(dims, n)]


def predict_logits(
    network,
    data: np.ndarray,
    patch: Sequence[int],
    num_heads: int,
    mirror_axes: Sequence[int],
    device,
    progress: Progress,
    step: float = 0.5,
    batch_size: int = 4,
    precision: str = "float16",
) -> np.ndarray:
    """Blended logits (num_heads, *data.shape[1:]) of ``network`` over ``data`` (C, a0, a1, a2).

    ``patch`` has three items (3D network) or two (2D network: slice by slice along a0, mirror
    axes then counted in the slice, 0 and 1). Images smaller than the patch are zero-padded
    symmetrically (as nnU-Net does; in-plane only for 2D) and cropped back.
    ``precision`` is the dtype of the weights and running sums: nnU-Net's float16 by default (its
    rounding decides voxels where two classes tie closely), ``float32`` for slightly cleaner sums.
    """
    import torch

    patch = tuple(int(p) for p in patch)
    shape = data.shape[1:]
    # A 2D patch leaves the first axis alone: nnU-Net pads only the axes the patch covers.
    covered = shape[len(shape) - len(patch):]
    pad = [0] * (len(shape) - len(patch)) + [max(0, p - s) for p, s in zip(patch, covered)]
    if any(pad):
        widths = [(0, 0)] + [(n // 2, n - n // 2) for n in pad]
        data = np.pad(data, widths, mode="constant", constant_values=0)
    padded_shape = data.shape[1:]
    corners = window_slicers(padded_shape, patch, step)
    weights_cpu = torch.from_numpy(gaussian_weights(patch, precision))
    weights = weights_cpu.to(device)
    mirrors = _mirror_sets(mirror_axes)
    image = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    # Folds one after the other, each blended on its own, then averaged: nnU-Net's order of
    # operations (which matters in float16) and only two full-size buffers whatever the fold count.
    members = list(network.folds.values()) if hasattr(network, "folds") else [network]
    result = None
    steps = len(corners) * len(members)
    with torch.inference_mode():
        for number, member in enumerate(members):
            logits = torch.zeros((num_heads,) + padded_shape, dtype=weights_cpu.dtype)
            total = torch.zeros(padded_shape, dtype=weights_cpu.dtype)
            for first in range(0, len(corners), batch_size):
                windows = corners[first:first + batch_size]
                batch = torch.stack([image[(slice(None),) + w] for w in windows]).to(device)
                out = forward(member, batch)
                for dims in mirrors:
                    out = out + torch.flip(forward(member, torch.flip(batch, dims)), dims)
                # In place (the same values as nnU-Net's ``prediction *= gaussian``): with 100+ classes a
                # window's logits are gigabytes, and every copy costs as much time as memory.
                if mirrors:
                    out.div_(len(mirrors) + 1)
                out = out.mul_(weights).float().cpu()
                for index, window in enumerate(windows):
                    logits[(slice(None),) + window] += out[index]
                    total[window] += weights_cpu
                done = number * len(corners) + first + len(windows)
                progress.update(done / steps, f"Windows {done}/{steps}")
            torch.div(logits, total, out=logits)
            result = logits if result is None else result.add_(logits)
            del logits, total
        if len(members) > 1:
            result /= len(members)
    crop = tuple(slice(n // 2, n // 2 + s) for n, s in zip(pad, shape))
    return result[(slice(None),) + crop].float().numpy()
