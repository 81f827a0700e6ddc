"""The segmentation engine: one model package in, a label map on the input's exact grid out.

Pipeline: check the input → reorient/resample to the model's canonical grid and normalise →
network (whole volume or sliding windows, optional mirror TTA) → probabilities back to the
input grid → arg-max → postprocess. Progress and cancellation reach every stage; nothing is
written here, so a cancelled or failed run leaves no output behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..errors import InputError, ModelError, ResourceError
from ..labels import SegmentLabel
from ..progress import Progress
from ..volume import Volume
from .device import select_device
from .memory import GIB, cuda_free_bytes, default_budget_bytes
from .postprocess import fill_holes, keep_largest_component
from .preprocess import prepare_input
from .restore import restore_labels
from .windows import WindowPlan, predict_probabilities

__all__ = ["Segmenter", "SegmentationResult", "check_input"]


@dataclass
class SegmentationResult:
    """A label map on the input grid, its labels, and how the run went."""

    labelmap: Volume
    labels: List[SegmentLabel]
    model_id: str
    device: str
    timings: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


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
    if array.size and array.min() == array.max():
        raise InputError(f"{name}: the volume is constant (every voxel is {array.flat[0]}); nothing to segment")
    return notes


def _estimate_bytes_per_voxel(manifest) -> float:
    """Activation memory of one forward pass per input voxel, from the first-level width.

    Measured on MONAI's UNet (see bench/): about 60 float32 values per first-level channel per
    voxel at peak in inference; the estimate keeps a margin over that.
    """
    args = manifest.architecture_args
    width = (args.get("channels") or args.get("features") or [args.get("feature_size", 32)])[0]
    return 4.0 * 80 * float(width)


def _whole_volume_ok(manifest) -> bool:
    """Opted in by the manifest, and eval-mode extent-independent: U-Nets with batch norm or none."""
    if manifest.strategy != "whole_volume" or manifest.architecture_name not in ("UNet", "AttentionUnet"):
        return False
    norm = manifest.architecture_args.get("norm", "instance" if manifest.architecture_name == "UNet" else "batch")
    name = norm[0] if isinstance(norm, (list, tuple)) else norm
    return str(name).lower() in ("batch", "none", "")


class Segmenter:
    """Runs one model package; the network is loaded once and reused for every volume.

    Args:
        package: a :class:`~segmentai_core.models.package.ModelPackage`.
        device: ``auto`` (CUDA → MPS → CPU), ``cpu``, ``cuda`` or ``mps``.
        tta: mirror test-time augmentation over the manifest's ``mirror_axes``.
        memory_budget_bytes: RAM the job may use (default: ¾ of the available memory).
    """

    def __init__(self, package, device: str = "auto", tta: bool = False,
                 memory_budget_bytes: Optional[int] = None) -> None:
        self.package = package
        self.manifest = package.manifest
        if len(self.manifest.input_channels) != 1:
            # e.g. an interactive model (image + mask + guidance): it needs prompts, not this engine.
            raise ModelError(
                f"model '{self.manifest.id}' takes {len(self.manifest.input_channels)} input channels "
                f"({', '.join(self.manifest.input_channels)}); 'segment' runs single-channel models "
                "(use 'segmentai refine' for interactive models)")
        self.device = select_device(device)
        self.tta = tta
        self.memory_budget_bytes = memory_budget_bytes or default_budget_bytes()
        self._network = None

    @property
    def network(self):
        if self._network is None:
            from .axis_order import adapt_axis_order

            network = adapt_axis_order(self.package.load_network(self.device), self.manifest.axis_order)
            if self.manifest.dimensions == 3:
                import torch

                network = network.to(memory_format=torch.channels_last_3d)  # see windows._forward
            self._network = network
        return self._network

    def estimate_peak_bytes(self, volume: Volume) -> float:
        """Peak RAM of :meth:`segment` for ``volume``, excluding the network itself."""
        spacing = np.asarray(volume.geometry.spacing)
        target = np.asarray(self.manifest.target_spacing)
        canonical_voxels = float(np.prod(volume.geometry.shape)) * float(np.prod(spacing / target)) * 1.5
        classes = self.manifest.num_classes
        return volume.array.size * (4.0 + 1.0) + canonical_voxels * 4.0 * (2 + 2 * classes) + 64e6

    def plan(self, num_voxels: float) -> WindowPlan:
        from ..models.networks import size_divisor

        dims = self.manifest.dimensions
        # Manifest sizes and axes are (x, y[, z]); arrays are ([k,] j, i): reverse once, here.
        patch_kji = tuple(reversed(self.manifest.patch_size))
        divisor = tuple(reversed(size_divisor(self.manifest.architecture, dims)))
        mirror = tuple(dims - 1 - a for a in self.manifest.mirror_axes) if self.tta else ()
        budget = cuda_free_bytes(self.device) or self.memory_budget_bytes
        return WindowPlan(
            num_classes=self.manifest.num_classes, patch_kji=patch_kji, overlap=self.manifest.overlap,
            divisor_kji=divisor, mirror_axes_kji=mirror, whole_volume_ok=_whole_volume_ok(self.manifest),
            bytes_per_voxel=_estimate_bytes_per_voxel(self.manifest), budget_bytes=int(budget * 0.8),
            crop_foreground=self.manifest.crop_foreground, spatial_dims=dims,
            blend_mode=self.manifest.blend_mode, sigma_scale=self.manifest.sigma_scale,
        )

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

    def segment(self, volume: Volume, progress: Optional[Progress] = None, name: str = "input") -> SegmentationResult:
        """Segment ``volume``; raises InputError/ResourceError/Cancelled, never returns a partial result."""
        progress = progress or Progress()
        if self.manifest.architecture_name == "nnUNet":  # imported nnU-Net: its own pre/postprocessing
            from .nnunet_pipeline import segment_nnunet

            return segment_nnunet(self, volume, progress, name)
        timings: Dict[str, float] = {}
        t = time.perf_counter()
        volume = Volume(volume.array.copy() if np.issubdtype(volume.array.dtype, np.floating) else volume.array,
                        volume.geometry)
        notes = check_input(volume, name)
        needed = self.estimate_peak_bytes(volume)
        if needed > self.memory_budget_bytes:
            raise ResourceError(
                f"{name}: segmenting {volume.geometry.describe()} needs about {needed / GIB:.1f} GiB, more than "
                f"the memory budget of {self.memory_budget_bytes / GIB:.1f} GiB; crop the volume or raise the budget"
            )
        self._check_window_fits(name)
        progress.update(0.0, "Loading the model")
        network = self.network
        timings["load_model"] = time.perf_counter() - t

        t = time.perf_counter()
        progress.update(0.02, "Resampling to the model's grid")
        prepared = prepare_input(volume, self.manifest.preprocessing)
        timings["preprocess"] = time.perf_counter() - t

        t = time.perf_counter()
        plan = self.plan(prepared.array.size)
        probabilities = predict_probabilities(network, prepared.array, plan, self.device, progress.span(0.1, 0.8))
        notes.extend(plan.notes)
        timings["network"] = time.perf_counter() - t
        del prepared.array

        t = time.perf_counter()
        # ``box``: the part of the input grid outside which every voxel is background.
        labels, box = restore_labels(probabilities, prepared.canonical, volume.geometry,
                                     self.manifest.label_values, progress.span(0.8, 0.95))
        del probabilities
        timings["restore"] = time.perf_counter() - t

        t = time.perf_counter()
        progress.update(0.96, "Postprocessing")
        if box is not None and self.manifest.largest_component:
            keep_largest_component(labels, self.manifest.label_values, within=box)
        if box is not None and self.manifest.fill_holes:
            fill_holes(labels, self.manifest.label_values, within=box)
        timings["postprocess"] = time.perf_counter() - t
        progress.update(1.0, "Done")
        return SegmentationResult(Volume(labels, volume.geometry), list(self.manifest.labels), self.manifest.full_id,
                                  str(self.device), timings, notes)
