"""Memory budget: how much RAM (or GPU memory) a job may use, and what fits in it."""

from __future__ import annotations

import os
from typing import Optional

__all__ = ["available_ram_bytes", "default_budget_bytes", "cuda_free_bytes", "GIB"]

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
