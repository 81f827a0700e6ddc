"""Describe the machine a benchmark ran on (CPU, cores, memory, GPU, library versions)."""

from __future__ import annotations

import os
import platform


def describe() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        pass
    import monai
    import SimpleITK

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": memory_gib,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
    }


def peak_rss_mib() -> float:
    """This process's own peak resident memory (MiB): ``VmHWM`` of /proc/self/status.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux that survives fork and exec, so a child
    spawned by a benchmark that holds gigabytes reports at least the parent's size at the fork
    (measured: a fresh interpreter under a parent of 313 MiB read 313 MiB, its own peak 13 MiB).
    """
    import resource

    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux: the best available
