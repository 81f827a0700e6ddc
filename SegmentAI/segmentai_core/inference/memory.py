"""Memory budget: how much RAM (or GPU memory) a job may use, and what fits in it."""

from __future__ import annotations

import os
from typing import Optional

__all__ = ["available_ram_bytes", "check_parameter_size", "default_budget_bytes", "cuda_free_bytes", "GIB"]

GIB = 1024**3


def available_ram_bytes() -> int:
    """Memory available to new allocations (``MemAvailable`` on Linux; total RAM elsewhere)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * GIB


def default_budget_bytes() -> int:
    """Three quarters of the available RAM, leaving room for the rest of the application."""
    return int(available_ram_bytes() * 0.75)


def cuda_free_bytes(device) -> Optional[int]:
    """Free memory on a CUDA device, or None for other devices."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def check_parameter_size(what: str, build):
    """Refuse, before allocating, a network whose parameters alone would not fit in the available memory.

    ``build()`` makes the network; it is first called on PyTorch's ``meta`` device, which records
    shapes and allocates nothing. ``what`` names the network in the ModelError. Returns the network
    built on ``meta`` (None where it could not be built there).
    """
    import torch

    from ..errors import ModelError

    try:
        with torch.device("meta"):
            network = build()
    except (RuntimeError, NotImplementedError):
        return None  # a network whose constructor computes with tensors (SwinUNETR): built for real afterwards
    if network is None:
        return None
    size = sum(p.numel() * p.element_size() for p in network.parameters())
    limit = available_ram_bytes() * 0.75
    if size > limit:
        raise ModelError(f"{what}: its parameters alone need {size / GIB:.1f} GiB, more than the "
                         f"{limit / GIB:.1f} GiB of memory available (implausible layer widths)")
    return network
