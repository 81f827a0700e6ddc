"""What every inference pipeline shares: the input check, the job the prelude hands over, the result.

:meth:`~.engine.Segmenter.segment` runs one prelude (own copy of the input, :func:`check_input`,
the pipeline's own checks, the network loaded) and hands a :class:`Job` to the pipeline of the
model's architecture (:mod:`.engine` for SegmentAI's, :mod:`.nnunet_pipeline` for nnU-Net's).
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

import numpy as np

from ..errors import InputError
from ..labels import SegmentLabel
from ..progress import Progress
from ..volume import Volume

__all__ = ["Job", "Pipeline", "SegmentationResult", "check_input"]


@dataclass
class SegmentationResult:
    """A label map on the input grid, its labels, and how the run went."""

    labelmap: Volume
    labels: List[SegmentLabel]
    model_id: str
    device: str
    timings: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


@dataclass
class Job:
    """One segmentation after the prelude: the checked input (the job's own copy) and its network.

    ``loading`` is the network, or a :class:`~concurrent.futures.Future` of it while it loads beside
    the pipeline's first steps; :attr:`network` waits for it (the wait is added to ``load_model``, so
    the stages still add up to the wall time) and re-raises what loading raised.
    """

    volume: Volume
    loading: Any
    progress: Progress
    name: str
    notes: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    # The input already on the model's grid and normalised by the caller (a
    # :class:`~.preprocess.PreparedInput` made with this model's preprocessing), or None: the pipeline
    # prepares it. The parent guard hands its child's over, so the same input is not prepared twice.
    prepared: Any = None

    @property
    def network(self) -> Any:
        if isinstance(self.loading, Future):
            t = time.perf_counter()
            self.loading = self.loading.result()
            self.timings["load_model"] = self.timings.get("load_model", 0.0) + time.perf_counter() - t
        return self.loading


@dataclass(frozen=True)
class Pipeline:
    """An inference pipeline: ``check(segmenter, volume, name)`` refuses before the network loads
    (model-level and memory checks), ``run(segmenter, job)`` returns the :class:`SegmentationResult`."""

    check: Callable[[Any, Volume, str], None]
    run: Callable[[Any, Job], SegmentationResult]


def check_input(volume: Volume, name: str = "input") -> List[str]:
    """Refuse volumes that cannot be segmented; returns notes about what was repaired.

    Non-finite voxels (NaN/Inf, e.g. from a reconstruction) are replaced by the lowest finite
    value, in place on a copy owned by the caller; a volume with no finite voxel, or a constant
    one, is refused because there is nothing to segment.
    """
    notes: List[str] = []
    array = volume.array
    if array.ndim != 3:
        raise InputError(f"{name}: a 3D volume is needed, got an array of shape {array.shape}")
    if min(array.shape) < 1:
        raise InputError(f"{name}: the volume is empty ({'×'.join(map(str, array.shape))})")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            if not finite.any():
                raise InputError(f"{name}: every voxel is NaN or infinite")
            bad = int(array.size - np.count_nonzero(finite))
            array[~finite] = array[finite].min()
            notes.append(f"{bad} NaN/infinite voxels were set to the lowest finite value")
    if array.size and _constant(array):
        raise InputError(f"{name}: the volume is constant (every voxel is {array.flat[0]}); nothing to segment")
    return notes


def _constant(array: np.ndarray) -> bool:
    """Whether every voxel has one value. Two values in a strided sample (about 100,000 voxels)
    already say no, which spares the two full passes of ``min`` and ``max`` (18 ms on a
    512x512x300 CT); only a sample of one value is checked in full."""
    step = max(1, round((array.size / 100_000) ** (1 / 3)))
    sample = array[::step, ::step, ::step]  # a strided view: no copy
    if sample.min() != sample.max():
        return False
    return bool(array.min() == array.max())
