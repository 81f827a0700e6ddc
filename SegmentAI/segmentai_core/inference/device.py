"""Compute device selection: CUDA → MPS → CPU, with an explicit override."""

from __future__ import annotations

from ..errors import ResourceError

__all__ = ["select_device", "DEVICE_CHOICES"]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def select_device(requested: str = "auto"):
    """Return a ``torch.device`` for ``requested`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    An explicit request for an unavailable device is an error, not a silent fallback: a user
    who asked for the GPU should learn that it is not there.
    """
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ResourceError(f"device '{requested}' requested but CUDA is not available on this machine")
        return torch.device(requested)
    if requested == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ResourceError("device 'mps' requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    if requested == "cpu":
        return torch.device("cpu")
    raise ResourceError(f"unknown device '{requested}' (choose one of {', '.join(DEVICE_CHOICES)})")
