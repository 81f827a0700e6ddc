"""Intensity normalisation, as declared in a model manifest's ``preprocessing.normalization``."""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

__all__ = ["normalize"]


def normalize(array: np.ndarray, spec: Mapping, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Return a float32 copy of ``array`` normalised according to ``spec``.

    ``spec["type"]``:
      * ``ct_window``: clip to ``window`` [lo, hi] HU, scale to 0..1.
      * ``zscore``: (x − mean) / std, over non-zero voxels when ``nonzero`` is true; with ``rescale``
        [lo, hi] the result is then min-max scaled to lo..hi (MONAI's NormalizeIntensityd + ScaleIntensityd).
      * ``percentile``: clip to the ``lower``/``upper`` percentiles, scale to 0..1.
      * ``none``: cast only.
    A constant image gives zeros rather than a division by zero.
    """
    kind = spec.get("type", "none")
    data = np.asarray(array, dtype=np.float32)
    if kind == "none":
        return data.copy()
    if kind == "ct_window":
        lo, hi = (float(v) for v in spec["window"])
        return _scale(np.clip(data, lo, hi), lo, hi)
    if kind == "percentile":
        sample = data[mask] if mask is not None else data
        lo, hi = np.percentile(_subsample(sample), [float(spec.get("lower", 0.5)), float(spec.get("upper", 99.5))])
        return _scale(np.clip(data, lo, hi), float(lo), float(hi))
    if kind == "zscore":
        region = data != 0 if spec.get("nonzero") else (mask if mask is not None else None)
        sample = data[region] if region is not None and region.any() else data
        mean, std = float(sample.mean()), float(sample.std())
        out = (data - mean) / std if std > 0 else np.zeros_like(data)
        if spec.get("nonzero"):
            out[~region] = 0.0
        if spec.get("rescale"):
            out = _min_max(out, *(float(v) for v in spec["rescale"]))
        return out.astype(np.float32, copy=False)
    raise ValueError(f"unknown normalization type {kind!r}")


def _scale(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros_like(data, dtype=np.float32)
    out = data - lo
    out *= 1.0 / (hi - lo)
    return out.astype(np.float32, copy=False)


def _min_max(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scale ``data``'s range to [low, high]; a constant array becomes ``data * low`` (as MONAI's rescale_array)."""
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return data * low
    return (data - lo) * ((high - low) / (hi - lo)) + low


def _subsample(values: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    """Percentiles of a strided subsample: same answer to ~0.1 %, much faster on big volumes."""
    flat = values.ravel()
    step = max(1, flat.size // limit)
    return flat[::step]
