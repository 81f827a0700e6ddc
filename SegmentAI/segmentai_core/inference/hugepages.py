"""Keep numpy from stalling on transparent huge pages.

On Linux numpy marks every large array ``madvise(MADV_HUGEPAGE)``. Where the kernel's THP ``defrag``
setting is ``madvise`` (the common default), ``always`` or ``defer+madvise``, a fault in such a region
compacts memory synchronously until a 2 MiB page is free: on these VMs the first 300 MB array of a
process took 0.35-0.68 s instead of 0.12 s, and a whole 512×512×300 segmentation spent about 0.3 s of
its first call there (``docs/benchmarks.md``). Without the advice the pages are ordinary 4 KiB ones,
faulted in without compaction. A user's own ``NUMPY_MADVISE_HUGEPAGE`` always wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["avoid_hugepage_stalls", "compacts_on_fault"]

DEFRAG = Path("/sys/kernel/mm/transparent_hugepage/defrag")
_STALLING_MODES = ("always", "madvise", "defer+madvise")


def compacts_on_fault(defrag: Path = DEFRAG) -> bool:
    """Whether a fault in a ``MADV_HUGEPAGE`` region may compact memory synchronously (False where
    the setting cannot be read: not Linux, or no THP)."""
    try:
        text = defrag.read_text()
    except OSError:
        return False
    selected: Optional[str] = next((w[1:-1] for w in text.split() if w.startswith("[") and w.endswith("]")), None)
    return selected in _STALLING_MODES


def avoid_hugepage_stalls(defrag: Path = DEFRAG) -> bool:
    """Turn numpy's huge-page advice off where it stalls, unless ``NUMPY_MADVISE_HUGEPAGE`` is set.
    Returns whether numpy's advice is now off. Process-wide and idempotent."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return os.environ["NUMPY_MADVISE_HUGEPAGE"].strip() == "0"
    if not compacts_on_fault(defrag):
        return False
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if setter is None:
        return False
    setter(False)
    return True
