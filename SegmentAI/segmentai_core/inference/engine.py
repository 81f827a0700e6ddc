"""The segmentation engine: one model package in, a label map on the input's exact grid out.

Pipeline: check the input → reorient/resample to the model's canonical grid and normalise →
network (whole volume or sliding windows, optional mirror TTA) → probabilities back to the
input grid → arg-max → postprocess. Progress and cancellation reach every stage; nothing is
written here, so a cancelled or failed run leaves no output behind.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import numpy as np

from ..errors import ModelError, ResourceError
from ..models.architectures import NNUNET
from ..models.manifest import ModelManifest
from ..progress import Progress
from ..volume import Volume
from .device import select_device
from .hugepages import avoid_hugepage_stalls
from .intensity_gate import gate_probabilities, normalized_ranges
from .job import Job, Pipeline, SegmentationResult, check_input
from .memory import GIB, cuda_free_bytes, default_budget_bytes
from .postprocess import (clean_labels, drop_off_intensity, fill_holes_in_probabilities, keep_largest_component,
                          keep_largest_single_label)
from .precision import check_precision, network_precision
from .preprocess import PreparedInput, prepare_input
from .restore import restore_labels
from .windows import WindowPlan, predict_probabilities

__all__ = ["Segmenter", "SegmentationResult", "check_input", "window_plan"]


def _estimate_bytes_per_voxel(manifest) -> float:
    """Activation memory of one forward pass per input voxel (the architecture's estimate, see bench/)."""
    return manifest.architecture_row.bytes_per_voxel(manifest.architecture_args)


def _whole_volume_ok(manifest) -> bool:
    """Opted in by the manifest, and eval-mode extent-independent (e.g. U-Nets with batch norm or none)."""
    return manifest.strategy == "whole_volume" and manifest.architecture_row.extent_independent(
        manifest.architecture_args)


def _pipeline(manifest) -> Pipeline:
    """The pipeline the manifest's architecture runs in."""
    if manifest.architecture_row.pipeline == NNUNET:  # imported nnU-Net: its own pre/postprocessing
        from .nnunet_pipeline import NNUNET_PIPELINE

        return NNUNET_PIPELINE
    return GENERIC_PIPELINE


def window_plan(manifest, budget_bytes: int, tta: bool = False) -> WindowPlan:
    """How :meth:`Segmenter.segment` runs ``manifest``'s network on the canonical grid (also used by
    training to validate a new package the way the engine will run it)."""
    return WindowPlan(
        num_classes=manifest.num_classes, patch_kji=manifest.patch_size_kji,
        overlap=manifest.overlap, divisor_kji=manifest.size_divisor_kji,
        mirror_axes_kji=manifest.mirror_axes_kji if tta else (),
        whole_volume_ok=_whole_volume_ok(manifest),
        bytes_per_voxel=_estimate_bytes_per_voxel(manifest), budget_bytes=int(budget_bytes),
        crop_foreground=manifest.crop_foreground, spatial_dims=manifest.dimensions,
        blend_mode=manifest.blend_mode, sigma_scale=manifest.sigma_scale,
    )


class Segmenter:
    """Runs one model package; the network is loaded once and reused for every volume.

    Args:
        package: a :class:`~segmentai_core.models.package.ModelPackage`.
        device: ``auto`` (CUDA → MPS → CPU), ``cpu``, ``cuda`` or ``mps``.
        tta: mirror test-time augmentation over the manifest's ``mirror_axes``.
        memory_budget_bytes: RAM the job may use (default: ¾ of the available memory).
        precision: the forward passes' arithmetic, ``float32`` or ``bfloat16`` (see :mod:`.precision`;
            InputError where the device cannot run it natively).
    """

    def __init__(self, package, device: str = "auto", tta: bool = False,
                 memory_budget_bytes: Optional[int] = None, precision: str = "float32") -> None:
        self.package = package
        self.manifest = package.manifest
        if len(self.manifest.input_channels) != 1:
            # e.g. an interactive model (image + mask + guidance): it needs prompts, not this engine.
            raise ModelError(
                f"model '{self.manifest.id}' takes {len(self.manifest.input_channels)} input channels "
                f"({', '.join(self.manifest.input_channels)}); 'segment' runs single-channel models "
                "(use 'segmentai refine' for interactive models)")
        self.device = select_device(device)
        self.precision = check_precision(precision, self.device)
        self.tta = tta
        self.memory_budget_bytes = memory_budget_bytes or default_budget_bytes()
        self._network = None
        self._loading = None  # the Future of a load started by load_in_background
        self._parent: Optional["Segmenter"] = None  # the parent model's, for a guarded package
        avoid_hugepage_stalls()  # a whole-volume job's first call would otherwise wait on compaction

    @property
    def network(self):
        if self._network is None:
            from .axis_order import adapt_axis_order

            network = adapt_axis_order(self.package.load_network(self.device), self.manifest.axis_order)
            if self.manifest.dimensions == 3:
                import torch

                network = network.to(memory_format=torch.channels_last_3d)  # see windows.forward
            self._network = network
        return self._network

    def load_in_background(self) -> None:
        """Start loading the network in a thread, e.g. while the input is read (SimpleITK's reader
        releases the GIL, so on 2 cores the load is then free); :meth:`segment` waits for it and
        raises what the load raised."""
        if self._network is None and self._loading is None:
            self._loading = self._start_loading()

    def _start_loading(self) -> "Future":
        """A one-thread pool loading :attr:`network`; its Future (see :class:`~.job.Job`)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segmentai-load")
        loading = pool.submit(lambda: self.network)
        pool.shutdown(wait=False)  # the thread ends when the load does
        return loading

    def parent_segmenter(self, parent_id: str, registry) -> "Segmenter":
        """The segmenter of the parent model ``parent_id`` (loaded once; ModelError if not installed)."""
        cached = self._parent
        if cached is None or cached.manifest.full_id != parent_id:
            # An id@version from a manifest: that exact installed package, never opened as a path.
            cached = Segmenter(registry.installed(parent_id), device=str(self.device))
            self._parent = cached
        return cached

    def estimate_peak_bytes(self, volume: Volume) -> float:
        """Peak RAM of :meth:`segment` for ``volume``, excluding the network itself."""
        spacing = np.asarray(volume.geometry.spacing)
        target = np.asarray(self.manifest.target_spacing)
        canonical_voxels = float(np.prod(volume.geometry.shape)) * float(np.prod(spacing / target)) * 1.5
        classes = self.manifest.num_classes
        return volume.array.size * (4.0 + 1.0) + canonical_voxels * 4.0 * (2 + 2 * classes) + 64e6

    def plan(self, num_voxels: float) -> WindowPlan:
        budget = cuda_free_bytes(self.device) or self.memory_budget_bytes
        return window_plan(self.manifest, int(budget * 0.8), self.tta)

    def _check_window_fits(self, name: str) -> None:
        """One sliding window (input, activations, probabilities) must fit the budget: checked before allocating."""
        if _whole_volume_ok(self.manifest):
            return  # the whole volume is one window; estimate_peak_bytes covered it
        voxels = float(np.prod(self.manifest.patch_size))
        needed = voxels * (_estimate_bytes_per_voxel(self.manifest) + 4.0 * (1 + 2 * self.manifest.num_classes))
        if needed > self.memory_budget_bytes:
            patch = "×".join(str(int(s)) for s in self.manifest.patch_size)
            raise ResourceError(
                f"{name}: model '{self.manifest.full_id}' works in {patch}-voxel windows, which need about "
                f"{needed / GIB:.1f} GiB each, more than the memory budget of {self.memory_budget_bytes / GIB:.1f} "
                f"GiB (estimated from the patch and the network's first-level width); the manifest is implausible "
                "or the budget too small")

    def segment(self, volume: Volume, progress: Optional[Progress] = None, name: str = "input",
                prepared: Optional[PreparedInput] = None) -> SegmentationResult:
        """Segment ``volume``; raises InputError/ResourceError/Cancelled, never returns a partial result.

        One prelude for every architecture (own copy of the input, :func:`check_input`, the pipeline's
        checks, the network loaded), then the pipeline of the architecture runs the job. ``prepared``:
        ``volume`` as :func:`prepare_input` made it with this model's preprocessing, which SegmentAI's
        pipeline then uses instead of preparing it again (the parent guard passes its child's; the
        caller vouches that it matches). It is not modified.
        """
        progress = progress or Progress()
        pipeline = _pipeline(self.manifest)
        t = time.perf_counter()
        volume = Volume(volume.array.copy() if np.issubdtype(volume.array.dtype, np.floating) else volume.array,
                        volume.geometry)
        notes = check_input(volume, name)
        pipeline.check(self, volume, name)
        progress.update(0.0, "Loading the model")
        if self.precision != "float32":
            notes.append(f"the network ran in {self.precision} (not bit-equal to float32)")
        loading = self._network
        if loading is None:  # loads beside the preprocessing, unless load_in_background started it earlier
            loading, self._loading = self._loading or self._start_loading(), None
        job = Job(volume, loading, progress, name, notes, {"load_model": time.perf_counter() - t},
                  copy.copy(prepared))  # a copy: the pipeline drops its array when it is done with it
        with network_precision(self.precision):
            return pipeline.run(self, job)


def _check_generic(segmenter: Segmenter, volume: Volume, name: str) -> None:
    """The job's peak memory and one sliding window must fit the budget: checked before allocating."""
    needed = segmenter.estimate_peak_bytes(volume)
    if needed > segmenter.memory_budget_bytes:
        raise ResourceError(
            f"{name}: segmenting {volume.geometry.describe()} needs about {needed / GIB:.1f} GiB, more than "
            f"the memory budget of {segmenter.memory_budget_bytes / GIB:.1f} GiB; crop the volume or raise the budget"
        )
    segmenter._check_window_fits(name)
    manifest = segmenter.manifest
    if manifest.intensity_gate:  # a gate the model's normalisation cannot express is refused before any work
        normalized_ranges(manifest.intensity_gate, manifest.label_values,
                          manifest.preprocessing.get("normalization", {}))


def cleans_on_input_grid(manifest: ModelManifest) -> bool:
    """Whether keep-largest and hole filling both run on the input grid (after the restore).

    Holes (3D, and slice-wise for the brain model) are filled on the model's grid, where they cost
    a fraction (0.35 s at full resolution on a 512x512x300 input, the network's own time), and they
    change no voxel of the reference brain masks' outputs. Keep-largest runs on the input grid in
    every case: a piece joined to the object by a bridge one coarse voxel wide comes apart after the
    restore (23,833 voxels on FSL's MNI152 head, Dice 0.9345 -> 0.9289 when it was dropped only on
    the coarse grid). Both steps stay on the input grid for a model whose pieces are first judged by
    their HU (``intensity_range``, on the input grid), and for a model of several classes, where
    filled voxels made certain on the coarse grid widen into their neighbours' boundaries (1.1 % of
    the voxels of the 104-class bench differed).
    """
    cleans = bool(manifest.largest_component or manifest.fill_holes)
    return cleans and (bool(manifest.intensity_range) or manifest.num_classes > 2)


def _run_generic(segmenter: Segmenter, job: Job) -> SegmentationResult:
    """SegmentAI's pipeline: canonical grid → windows → probabilities back on the input grid → labels."""
    manifest, progress, volume, timings, notes = segmenter.manifest, job.progress, job.volume, job.timings, job.notes
    t = time.perf_counter()
    progress.update(0.02, "Resampling to the model's grid")
    prepared = job.prepared if job.prepared is not None else prepare_input(volume, manifest.preprocessing)
    timings["preprocess"] = time.perf_counter() - t

    network = job.network  # waits for the load (counted in load_model) if it is still running
    t = time.perf_counter()
    plan = segmenter.plan(prepared.array.size)
    probabilities = predict_probabilities(network, prepared.array, plan, segmenter.device,
                                          progress.span(0.1, 0.8))
    notes.extend(plan.notes)
    timings["network"] = time.perf_counter() - t

    t = time.perf_counter()
    if manifest.intensity_gate:  # on the model's grid, where the fine-tuning run chose it
        ranges = normalized_ranges(manifest.intensity_gate, manifest.label_values,
                                   manifest.preprocessing.get("normalization", {}))
        gate_probabilities(probabilities, prepared.array, ranges)
    if manifest.parent_guard:  # on the model's grid, before any hole is filled; a stage of its own
        guard_started = time.perf_counter()
        _guard_by_parent(segmenter, volume, prepared, probabilities, notes)
        timings["parent_guard"] = time.perf_counter() - guard_started
        t += timings["parent_guard"]  # not counted twice in postprocess
    del prepared.array
    on_input_grid = cleans_on_input_grid(manifest)
    if manifest.fill_slice_holes or (manifest.fill_holes and not on_input_grid):
        # On the model's grid, a fraction of the cost at full resolution (see cleans_on_input_grid).
        fill_holes_in_probabilities(probabilities, largest=manifest.largest_component,
                                    slice_holes=manifest.fill_slice_holes)
    timings["postprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    # ``box``: the part of the input grid outside which every voxel is background.
    labels, box = restore_labels(probabilities, prepared.canonical, volume.geometry,
                                 manifest.label_values, progress.span(0.8, 0.95))
    del probabilities
    timings["restore"] = time.perf_counter() - t

    t = time.perf_counter()
    progress.update(0.96, "Postprocessing")
    if box is not None and manifest.intensity_range:
        drop_off_intensity(labels, volume.array, manifest.intensity_range, within=box)
    if box is not None and on_input_grid:
        clean_labels(labels, manifest.label_values, largest=manifest.largest_component,
                     holes=manifest.fill_holes, within=box)
    elif box is not None and manifest.largest_component and len(manifest.label_values) == 1:
        keep_largest_single_label(labels, box)  # the restore wrote that one label only
    elif box is not None and manifest.largest_component:
        keep_largest_component(labels, manifest.label_values, within=box)
    timings["postprocess"] += time.perf_counter() - t
    progress.update(1.0, "Done")
    return SegmentationResult(Volume(labels, volume.geometry), list(manifest.labels), manifest.full_id,
                              str(segmenter.device), timings, notes)


def _guard_by_parent(segmenter: Segmenter, volume: Volume, prepared: PreparedInput, probabilities: np.ndarray,
                     notes: list) -> None:
    """Keep the foreground within the manifest's reach of the parent's answer (:mod:`.parent_guard`),
    in place on the model's grid.

    The parent segments the volume as it would alone (its keep-largest on the input grid included: on
    FSL's head its model-grid foreground holds a 23,833-voxel piece that only the input grid parts
    from the brain, and a guard drawn around that piece left the fine-tuned model's neck pieces in);
    its answer is carried to the model's grid (every model voxel it touches). A parent that is not
    installed, or is not a binary model, leaves the answer unguarded, and the notes say so. A parent
    with the same preprocessing and pipeline (a fine-tuned brain model's parent) reuses ``prepared``
    instead of resampling and normalising the volume again."""
    from ..models.registry import ModelRegistry
    from .canonical import resample_to
    from .parent_guard import allowed_region, apply_guard

    parent_id, reach_mm = segmenter.manifest.parent_guard
    try:
        parent = segmenter.parent_segmenter(parent_id, ModelRegistry())
    except ModelError as error:
        notes.append(f"not guarded by the parent model {parent_id}: {error}")
        return
    if parent.manifest.num_classes != 2 or probabilities.shape[0] != 2:
        notes.append(f"not guarded by the parent model {parent_id}: it is not a binary model")
        return
    same = parent.manifest.preprocessing == segmenter.manifest.preprocessing and \
        _pipeline(parent.manifest) is _pipeline(segmenter.manifest)
    answer = parent.segment(volume, prepared=prepared if same else None).labelmap.array
    canonical = prepared.canonical
    touched = resample_to(Volume(answer, volume.geometry), canonical, order=1).array > 0
    spacing_kji = tuple(float(s) for s in canonical.spacing_kji)
    # Plus one voxel's diagonal: the restore interpolates between a voxel and its 26 neighbours, so a
    # guard that reaches every neighbour of the parent's foreground leaves the parent's own answer whole.
    margin = float(np.linalg.norm(spacing_kji))
    removed = apply_guard(probabilities, allowed_region(touched, spacing_kji, reach_mm + margin))
    notes.append(f"guarded by the parent model {parent_id}: {removed} model-grid voxels farther than "
                 f"{reach_mm:g} mm (+ {margin:.1f} mm of interpolation) from its answer were set to background")


GENERIC_PIPELINE = Pipeline(check=_check_generic, run=_run_generic)
