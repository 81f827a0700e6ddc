"""Random training patches with augmentation, drawn from cases already on the canonical grid.

Augmentation uses MONAI's transforms: affine (rotation, scale, translation), left-right flip,
bias field, gamma, intensity scale/shift, noise and blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["CanonicalCase", "PatchSampler"]


@dataclass
class CanonicalCase:
    """A normalised image and its label map on the model's canonical grid (arrays [k, j, i])."""

    name: str
    image: np.ndarray
    label: np.ndarray
    weight: float = 1.0


def _augmentations(patch_kji: Sequence[int], modality: str = "MR", flip_axis: Optional[int] = 2):
    """MONAI's spatial and intensity augmentation; CT keeps its intensities nearly absolute.

    MR intensities are arbitrary per scanner, so gamma, bias field, scale and shift make the model
    indifferent to them. Hounsfield units are calibrated: the same shifts (0.08 of a 400 HU window
    is 32 HU) would teach a liver model that a 20 HU bladder may be liver, so CT gets only noise,
    blur and a few HU of scale and shift.
    """
    from monai import transforms as T

    keys = ["image", "label"]
    spatial = [
        T.RandAffined(keys, prob=0.85, spatial_size=tuple(patch_kji), rotate_range=(0.35, 0.35, 0.35),
                      scale_range=(0.15, 0.15, 0.15), translate_range=(6, 6, 6), mode=("bilinear", "nearest"),
                      padding_mode="border"),
    ]
    if flip_axis is not None:  # left-right: array axis i of a RAS grid; None for lateralised anatomy
        spatial.append(T.RandFlipd(keys, prob=0.5, spatial_axis=flip_axis))
    if str(modality).upper() == "CT":
        intensity = [
            T.RandScaleIntensityd("image", prob=0.3, factors=0.03),
            T.RandShiftIntensityd("image", prob=0.3, offsets=0.015),
        ]
    else:
        intensity = [
            T.RandBiasFieldd("image", prob=0.3, coeff_range=(0.0, 0.3)),
            T.RandAdjustContrastd("image", prob=0.4, gamma=(0.7, 1.5)),
            T.RandScaleIntensityd("image", prob=0.3, factors=0.15),
            T.RandShiftIntensityd("image", prob=0.3, offsets=0.08),
        ]
    return T.Compose(spatial + intensity + [
        T.RandGaussianNoised("image", prob=0.3, std=0.04),
        T.RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0)),
    ])


class PatchSampler:
    """Yields batches ``{"image": (B,1,k,j,i), "label": (B,1,k,j,i)}`` forever.

    A patch is centred on a foreground voxel with probability ``foreground_fraction`` (the
    class-imbalance remedy of nnU-Net); otherwise, half the time, anywhere within one patch of the
    labelled structure (its surroundings, where the hard background is: neighbouring organs, the
    structure's edges), and else anywhere in the volume. Cases are drawn by ``weight``.
    """

    def __init__(self, cases: List[CanonicalCase], patch_kji: Sequence[int], batch_size: int = 2,
                 foreground_fraction: float = 0.67, seed: int = 0, modality: str = "MR",
                 flip_axis: Optional[int] = 2) -> None:
        self.cases = cases
        self.patch = np.asarray(patch_kji)
        self.batch_size = batch_size
        self.foreground_fraction = foreground_fraction
        self.rng = np.random.default_rng(seed)
        self.augment = _augmentations(patch_kji, modality, flip_axis)
        self.augment.set_random_state(seed=seed)
        weights = np.array([c.weight for c in cases], dtype=float)
        self.probabilities = weights / weights.sum()
        self._foreground = [np.argwhere(c.label > 0) for c in cases]
        self._surroundings = [(np.maximum(fg.min(0) - self.patch, 0), np.minimum(fg.max(0) + self.patch + 1,
                                                                                  c.image.shape))
                              if len(fg) else (np.zeros(3, int), np.array(c.image.shape)) for fg, c in
                              zip(self._foreground, cases)]

    def _crop(self, index: int) -> Dict[str, np.ndarray]:
        case = self.cases[index]
        region = (self.patch * 1.25).astype(int)  # room for rotation before the final crop
        shape = np.array(case.image.shape)
        fg = self._foreground[index]
        if len(fg) and self.rng.random() < self.foreground_fraction:
            centre = fg[self.rng.integers(len(fg))]
        elif self.rng.random() < 0.5:
            lo, hi = self._surroundings[index]
            centre = np.array([self.rng.integers(a, b) for a, b in zip(lo, hi)])
        else:
            centre = np.array([self.rng.integers(0, s) for s in shape])
        start = centre - region // 2
        pad_before = np.maximum(0, -start)
        pad_after = np.maximum(0, start + region - shape)
        lo = np.maximum(start, 0)
        hi = np.minimum(start + region, shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        pads = list(zip(pad_before, pad_after))
        # Outside the scan is zero, as the engine pads its windows (after normalisation), not the
        # edge slice smeared outwards: a patch taller than a half-scan must not see a fake organ.
        image = np.pad(case.image[sl], pads, mode="constant")
        label = np.pad(case.label[sl], pads, mode="constant")
        return {"image": image[None].astype(np.float32), "label": label[None].astype(np.float32)}

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> Dict[str, torch.Tensor]:
        items = []
        for _ in range(self.batch_size):
            index = int(self.rng.choice(len(self.cases), p=self.probabilities))
            items.append(self.augment(self._crop(index)))
        return {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in ("image", "label")}


def recalibrate_batch_norm(network: torch.nn.Module, batches, count: int) -> None:
    """Re-estimate BatchNorm running statistics as plain averages over ``count`` batches.

    Running averages with momentum follow the last few noisy small batches; a precise estimate
    over many batches makes eval mode match training (and makes whole-volume inference exact).
    """
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    network.train()
    with torch.no_grad():
        for _ in range(count):
            network(next(batches)["image"])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    network.eval()
