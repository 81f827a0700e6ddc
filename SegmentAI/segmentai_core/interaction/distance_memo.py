"""Geodesic distances kept between interactions, by what they were computed from, and computed two
at a time.

A click changes one side's seeds only: a positive click adds object seeds (and a region term made
from them) and leaves the background's seeds and step costs as they were; a negative click does the
opposite. So each geodesic competition after the first needs one of its two distances anew, and the
other is the one the previous interaction computed from the same inputs. The key of a distance is a
digest of everything it depends on (the image, the seeds, the costs' parameters and extra terms), so
a hit returns exactly what a new computation would.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Hashable, List, Optional, Tuple

import numpy as np

from .geodesic import PARALLEL_MIN_VOXELS, StepCosts, geodesic_distance

__all__ = ["DistanceMemo", "digest", "once"]


def digest(array: Optional[np.ndarray]) -> Optional[bytes]:
    """A digest of an array's shape, type and values (None for None); about 2 ms per 96³ float32."""
    if array is None:
        return None
    data = np.ascontiguousarray(array)
    hasher = hashlib.sha256(repr((data.shape, data.dtype.str)).encode())
    hasher.update(memoryview(data).cast("B"))
    return hasher.digest()


def once(make: Callable[[], StepCosts]) -> Callable[[], StepCosts]:
    """``make`` called at most once, on first use, from any thread (two jobs may share step costs)."""
    lock = threading.Lock()
    made: list = []

    def get() -> StepCosts:
        with lock:
            if not made:
                made.append(make())
        return made[0]

    return get


Job = Tuple[Hashable, np.ndarray, Callable[[], StepCosts]]
"""A distance to have: its key, its start costs (``init``) and a function giving its step costs."""


class DistanceMemo:
    """The latest ``entries`` geodesic distances by key; :meth:`distances` computes the missing ones,
    two at a time (numpy releases the GIL in its loops: each is computed exactly as alone)."""

    def __init__(self, entries: int = 8) -> None:
        self.entries = entries
        self._kept: "OrderedDict[Hashable, np.ndarray]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._kept.clear()

    def distances(self, jobs: List[Job], passes: int) -> Dict[Hashable, np.ndarray]:
        """The distance of each job (read-only arrays), from the memo where it holds the key."""
        out: Dict[Hashable, np.ndarray] = {}
        missing: Dict[Hashable, Job] = {}
        jobs = [((passes, job[0]),) + tuple(job[1:]) for job in jobs]  # type: ignore[misc]
        for job in jobs:
            key = job[0]
            if key in self._kept:
                self._kept.move_to_end(key)
                out[key] = self._kept[key]
                self.hits += 1
            elif key not in missing:
                missing[key] = job
        if missing:
            self.misses += len(missing)
            out.update(_compute(list(missing.values()), passes))
            for key in missing:
                out[key].setflags(write=False)
                self._kept[key] = out[key]
            while len(self._kept) > self.entries:
                self._kept.popitem(last=False)
        return {key[1]: value for key, value in out.items()}


def _compute(jobs: List[Job], passes: int) -> Dict[Hashable, np.ndarray]:
    def run(job: Job) -> np.ndarray:
        return geodesic_distance(job[1], job[2](), passes)

    if len(jobs) == 1 or jobs[0][1].size < PARALLEL_MIN_VOXELS:
        return {job[0]: run(job) for job in jobs}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [(job[0], pool.submit(run, job)) for job in jobs]
        return {key: future.result() for key, future in futures}
