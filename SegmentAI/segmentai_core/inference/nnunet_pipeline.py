"""The inference path of imported nnU-Net v2 models: nnU-Net's own preprocessing and export.

nnU-Net does not reorient: it works on the array as stored (``[k, j, i]``, as SimpleITK reads
it), permuted by the plans' ``transpose_forward`` so that the coarse axis comes first. The
permutation is part of the *model* (its axis order), not a change of image geometry: it is
undone before the label map goes back onto the input's own grid, which is therefore exact.

Steps (all parameters from the manifest's ``x-nnunet`` block, written by the importer):
transpose → crop to the non-zero box → normalise (CT: clip to the fingerprint's 0.5/99.5
percentiles, then mean/std; z-score otherwise) → resample to the plans' spacing (a ``2d``
configuration's spacing is in-plane only: the first axis keeps the input's slice spacing) →
Gaussian sliding windows with mirroring (3D windows, or 2D windows slice by slice along the
first axis for ``2d``), folds averaged → logits resampled back → soft-max or sigmoid
regions → label map un-cropped and transposed back → nnU-Net's own postprocessing (the steps of
its ``postprocessing.pkl``, see :mod:`.nnunet_postprocess`), when the model folder had one.

TotalSegmentator's models (``x-nnunet.resample_mm``, from the catalog) run inside that tool's
own round trip (:mod:`.resample_first`: closest RAS axis order, linear resampling to its spacing,
labels back by nearest neighbour), which is what TotalSegmentator does around nnU-Net.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError
from ..models.extensions import NNUNET_EXTENSION, NNUNetSettings
from ..progress import Progress
from ..volume import Volume
from .job import Job, Pipeline, SegmentationResult
from .nnunet_postprocess import apply_nnunet_postprocessing
from .nnunet_resample import new_shape_for, resample_nnunet
from .nnunet_windows import predict_logits
from .postprocess import fill_holes, keep_largest_component

__all__ = ["NNUNET_EXTENSION", "NNUNET_PIPELINE", "NNUNetInput", "NNUNetPrediction", "preprocess_nnunet",
           "predict_nnunet"]



@dataclass
class NNUNetInput:
    """A volume after nnU-Net's preprocessing, and what is needed to map results back onto it."""

    data: np.ndarray  # (channels, a0, a1, a2): model axis order, cropped, normalised, at the plans' spacing
    box: Tuple[slice, ...]  # the non-zero crop, in the transposed array
    cropped_shape: Tuple[int, ...]
    spacing: List[float]  # of the transposed input (model axis order)
    target: List[float]  # the plans' spacing (model axis order)


@dataclass
class NNUNetPrediction:
    """Label map (nnU-Net label values) and per-head probabilities, both in the input's array order."""

    labels: np.ndarray
    probabilities: Optional[np.ndarray]


def _nonzero_box(data: np.ndarray) -> Tuple[slice, ...]:
    """Bounding box of the non-zero voxels of any channel, holes filled (nnU-Net's crop)."""
    from scipy.ndimage import binary_fill_holes

    from .postprocess import bounding_box

    mask = binary_fill_holes(np.any(data != 0, axis=0))
    box = bounding_box(mask, margin=0)
    return box if box is not None else tuple(slice(0, n) for n in mask.shape)


def _normalize(channel: np.ndarray, spec: Dict[str, Any], inside: Optional[np.ndarray]) -> np.ndarray:
    scheme = spec["scheme"]
    if scheme == "CTNormalization":
        np.clip(channel, spec["lower"], spec["upper"], out=channel)
        channel -= np.float32(spec["mean"])
        channel /= np.float32(max(spec["std"], 1e-8))
        return channel
    if scheme == "ZScoreNormalization":
        if spec.get("use_mask") and inside is not None:
            values = channel[inside]
            mean, std = values.mean(), values.std()
            channel[inside] = (values - mean) / max(std, 1e-8)
            return channel
        mean, std = channel.mean(), channel.std()
        channel -= mean
        channel /= max(std, 1e-8)
        return channel
    if scheme == "NoNormalization":
        return channel
    if scheme == "RescaleTo01Normalization":
        channel -= channel.min()
        channel /= np.clip(channel.max(), a_min=1e-8, a_max=None)
        return channel
    raise InputError(f"nnU-Net normalisation '{scheme}' is not supported")


def _to_labels(logits: np.ndarray, regions: Optional[List[int]],
               with_probabilities: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """nnU-Net's non-linearity and decision: soft-max + arg-max, or sigmoid regions painted in order."""
    import torch

    tensor = torch.from_numpy(logits)
    probabilities = None
    if regions is None:
        # Arg-max of logits equals arg-max of soft-max: skip the latter unless asked for.
        if with_probabilities:
            probabilities = torch.softmax(tensor.float(), 0).numpy()
        labels = np.argmax(logits, axis=0)
    else:
        probabilities = torch.sigmoid(tensor.float()).numpy()
        labels = np.zeros(logits.shape[1:], dtype=np.int64)
        for head, value in enumerate(regions):
            labels[probabilities[head] > 0.5] = value
    dtype = np.uint8 if max(regions or [logits.shape[0]]) < 255 else np.uint16
    return labels.astype(dtype), probabilities


def _default_batch(patch: Sequence[int]) -> int:
    """Windows per forward pass. 3D: up to 4 while the batch holds at most 2 M voxels, so a release-size
    window (TotalSegmentator's 112×112×128, 1.6 M voxels) runs alone — batching such windows bought
    nothing on 2 cores (5.7 vs 5.3 s per window) and took 12 GB instead of 3.8 GB with 118 classes,
    while small windows gain from it (32³: 0.075 vs 0.094 s). 2D: as many as hold about 4 M voxels
    (at most 32), since a 2D window is one slice thick and one window per pass leaves the cores idle."""
    voxels = int(np.prod(patch))
    if len(patch) == 3:
        return int(max(1, min(4, 2**21 // voxels)))
    return int(max(1, min(32, 2**22 // voxels)))


def preprocess_nnunet(volume: Volume, config: Union[NNUNetSettings, Dict[str, Any]]) -> NNUNetInput:
    """nnU-Net's preprocessing of ``volume`` (``config``: the manifest's ``x-nnunet`` block or its settings).

    Transpose to the model's axis order, crop to the non-zero box, normalise, resample to the
    plans' spacing. Shared by inference and by fine-tuning, so both see the same data.
    """
    config = NNUNetSettings.of(config)
    forward = config.transpose_forward
    # SimpleITK's array order is (k, j, i) and nnU-Net's spacing follows it.
    spacing_array = volume.geometry.spacing_kji
    spacing = [float(spacing_array[a]) for a in forward]
    target: Sequence[float] = list(config.spacing)
    if len(target) == 2:  # 2d: nnU-Net resamples in-plane only and keeps the slice spacing
        target = [spacing[0]] + list(target)
    data = np.transpose(volume.array, forward)[None].astype(np.float32)
    box = _nonzero_box(data)
    data = np.ascontiguousarray(data[(slice(None),) + box])
    cropped_shape = tuple(data.shape[1:])
    inside = None
    if any(spec.get("use_mask") for spec in config.normalization):
        from scipy.ndimage import binary_fill_holes

        inside = binary_fill_holes(np.any(data != 0, axis=0))
    for c, spec in enumerate(config.normalization):
        data[c] = _normalize(data[c], spec, inside)
    resampling = config.resampling_data
    data = resample_nnunet(data, new_shape_for(cropped_shape, spacing, target), spacing, target,
                           int(resampling["order"]), int(resampling["order_z"]), resampling.get("force_separate_z"))
    return NNUNetInput(data, box, cropped_shape, spacing, [float(t) for t in target])


def predict_nnunet(network, volume: Volume, config: Union[NNUNetSettings, Dict[str, Any]], device,
                   progress: Optional[Progress] = None, timings: Optional[Dict[str, float]] = None,
                   with_probabilities: bool = False) -> NNUNetPrediction:
    """Run an imported nnU-Net model (``config``: the manifest's ``x-nnunet`` block or its settings) on ``volume``.

    ``probabilities`` is filled only when ``with_probabilities`` (it holds every head at full size).
    """
    config = NNUNetSettings.of(config)
    progress = progress or Progress()
    timings = {} if timings is None else timings
    forward = config.transpose_forward
    backward = config.transpose_backward

    t = time.perf_counter()
    progress.update(0.0, "nnU-Net preprocessing")
    prepared = preprocess_nnunet(volume, config)
    data, box, cropped_shape = prepared.data, prepared.box, prepared.cropped_shape
    spacing, target = prepared.spacing, prepared.target
    del prepared
    timings["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    batch_size = config.batch_size or _default_batch(config.patch_size)
    logits = predict_logits(network, data, config.patch_size, config.num_heads, config.mirror_axes, device,
                            progress.span(0.05, 0.85), step=config.step_size, batch_size=batch_size)
    del data
    timings["network"] = time.perf_counter() - t

    t = time.perf_counter()
    progress.update(0.86, "nnU-Net export")
    resampling = config.resampling_probabilities
    logits = resample_nnunet(logits, cropped_shape, target, spacing, int(resampling["order"]),
                             int(resampling["order_z"]), resampling.get("force_separate_z"))
    regions = config.regions_class_order
    labels_cropped, probabilities_cropped = _to_labels(logits, regions, with_probabilities)
    del logits
    full_shape = tuple(np.transpose(volume.array, forward).shape)
    labels = np.zeros(full_shape, dtype=labels_cropped.dtype)
    labels[box] = labels_cropped
    probabilities = None
    if probabilities_cropped is not None:
        probabilities = np.zeros((probabilities_cropped.shape[0],) + full_shape, dtype=np.float32)
        if regions is None:
            probabilities[0] = 1.0  # outside the crop nnU-Net declares background
        probabilities[(slice(None),) + box] = probabilities_cropped
        probabilities = np.ascontiguousarray(np.transpose(probabilities, [0] + [a + 1 for a in backward]))
    result = NNUNetPrediction(np.ascontiguousarray(np.transpose(labels, backward)), probabilities)
    timings["restore"] = time.perf_counter() - t
    return result


def _config(manifest) -> NNUNetSettings:
    config = manifest.nnunet_settings
    if config is None:
        raise InputError(f"model '{manifest.id}' is an nnU-Net model without its '{NNUNET_EXTENSION}' block")
    return config


def _check_nnunet(segmenter, volume: Volume, name: str) -> None:
    manifest = segmenter.manifest
    config = _config(manifest)
    if config.in_channels != 1:
        raise InputError(f"{name}: model '{manifest.id}' needs {config.in_channels} input channels; "
                         "SegmentAI passes one volume")


def _run_nnunet(segmenter, job: Job) -> SegmentationResult:
    """:meth:`Segmenter.segment` after its prelude, for architectures whose pipeline is nnU-Net's."""
    manifest, timings = segmenter.manifest, job.timings
    config = _config(manifest)
    volume, grid = job.volume, None
    if config.resample_mm:  # TotalSegmentator's models: its own round trip, so the answer is its answer
        from .resample_first import to_working_grid

        t = time.perf_counter()
        grid = to_working_grid(volume, config.resample_mm)
        volume = grid.volume
        timings["resample_first"] = time.perf_counter() - t
    prediction = predict_nnunet(job.network, volume, config, segmenter.device, job.progress.span(0.02, 0.95),
                                timings)
    labels = prediction.labels
    del prediction, volume
    if grid is not None:
        t = time.perf_counter()
        labels = grid.labels_back(labels)
        timings["resample_back"] = time.perf_counter() - t
    t = time.perf_counter()
    # nnU-Net applies it to the exported label map; connectivity does not depend on the axis order.
    apply_nnunet_postprocessing(labels, config.postprocessing)
    if manifest.largest_component:
        keep_largest_component(labels, manifest.label_values)
    if manifest.fill_holes:
        fill_holes(labels, manifest.label_values)
    timings["postprocess"] = time.perf_counter() - t
    job.progress.update(1.0, "Done")
    return SegmentationResult(Volume(labels, job.volume.geometry), list(manifest.labels), manifest.full_id,
                              str(segmenter.device), timings, job.notes)


NNUNET_PIPELINE = Pipeline(check=_check_nnunet, run=_run_nnunet)
"""nnU-Net's pipeline, run by :meth:`~.engine.Segmenter.segment` after its prelude."""
