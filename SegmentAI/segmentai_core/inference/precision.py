"""The arithmetic of the network's forward passes: float32 (default) or bfloat16 (opt-in).

bfloat16 runs the convolutions through oneDNN's bfloat16 kernels under ``torch.autocast``, which
CPUs with AMX or AVX-512 BF16 execute natively: on the 2-core Xeon of ``bench/`` a window of
TotalSegmentator's release-size network takes 2.1 s instead of 5.2 s, and the brain model's network
0.12 s instead of 0.21 s, with label maps that differ from float32 in a few voxels per thousand on
the boundary (Dice 0.9992–0.9995 on unseen real heads; bench/bench_totalseg.py reports it per run).
It is a choice the user makes (``segment --precision bfloat16``), never a silent default, since the
result is not bit-equal to the float32 one that the parity tests pin down.

The choice is held in a context variable for the duration of one job (:func:`network_precision`), so
the window loops of every pipeline read it without each carrying a parameter, and concurrent jobs
(the web app's threads) do not see each other's.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from ..errors import InputError

PRECISIONS = ("float32", "bfloat16")
_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("segmentai_precision", default="float32")


def bfloat16_supported() -> bool:
    """True when this CPU runs oneDNN's bfloat16 kernels natively (AMX or AVX-512 BF16)."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
        if flags:
            return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        pass
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # not Linux: torch's own check


def check_precision(precision: str, device) -> str:
    """``precision`` if this device can run it; InputError (one line) otherwise."""
    if precision not in PRECISIONS:
        raise InputError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    kind = getattr(device, "type", str(device))
    if precision == "bfloat16" and kind == "cpu" and not bfloat16_supported():
        raise InputError("bfloat16 needs a CPU with AMX or AVX-512 BF16 (this one has neither, so it would run "
                         "slower than float32); use --precision float32")
    if precision == "bfloat16" and kind == "mps":
        raise InputError("bfloat16 is not offered on Apple GPUs (mps); use --precision float32")
    return precision


def current_precision() -> str:
    return _CURRENT.get()


@contextlib.contextmanager
def network_precision(precision: str) -> Iterator[None]:
    """Forward passes inside run in ``precision`` (see :func:`~.windows.forward`)."""
    token = _CURRENT.set(precision)
    try:
        yield
    finally:
        _CURRENT.reset(token)
