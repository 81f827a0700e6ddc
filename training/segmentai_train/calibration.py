"""The decision threshold of each new class, chosen on the held-aside validation and baked into the head.

A model fine-tuned on one corrected half-scan is under-confident on the part it never saw: on the
unseen lower half of a liver its foreground probability stayed between 0.1 and 0.5 over most of the
organ, so the arg-max (a 0.5 threshold) kept half of it (test Dice 0.63; 0.72 with a 0.2
threshold). The held-aside slab (the structure's far end, never trained on) is the closest stand-in
for that unseen part, so the threshold is chosen there: for each class, the logit offset among
:data:`THRESHOLDS` that maximises the held-aside Dice, kept only if it gains at least
:data:`MIN_GAIN`. The offset is added to the bias of the network's output convolution, so the
package's arg-max (the engine, every front end, export) applies it with no change anywhere else:
with softmax, class ``c`` wins over background where ``p_c > t`` once ``log((1 - t) / t)`` is
added to its logit (exact for two classes).
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["THRESHOLDS", "MIN_GAIN", "offset_for", "choose_offsets", "output_bias", "add_class_offsets", "calibrate"]

THRESHOLDS = (0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1)  # probability thresholds tried for each class
MIN_GAIN = 0.005  # held-aside Dice an offset must gain to be kept


def offset_for(threshold: float) -> float:
    """The logit offset that turns arg-max into ``p_c > threshold`` (two classes)."""
    return math.log((1.0 - threshold) / threshold)


def _mean_dice(logits: Sequence[np.ndarray], labels: Sequence[np.ndarray], offsets: np.ndarray) -> float:
    scores = []
    for z, truth in zip(logits, labels):
        predicted = (z + offsets[:, None, None, None]).argmax(0)
        per_class = []
        for c in range(1, z.shape[0]):
            a, b = predicted == c, truth == c
            denom = int(a.sum()) + int(b.sum())
            per_class.append(1.0 if denom == 0 else 2.0 * int((a & b).sum()) / denom)
        scores.append(float(np.mean(per_class)))
    return float(np.mean(scores))


def choose_offsets(logits: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> Tuple[np.ndarray, float, float]:
    """Per-class logit offsets (background 0) maximising the mean Dice of ``logits`` ((C, k, j, i) each)
    against ``labels``; one pass of coordinate ascent over :data:`THRESHOLDS`. Returns the offsets,
    the Dice without and with them. An offset that gains under :data:`MIN_GAIN` stays 0."""
    classes = logits[0].shape[0]
    offsets = np.zeros(classes, dtype=np.float32)
    before = best = _mean_dice(logits, labels, offsets)
    for c in range(1, classes):
        chosen = 0.0
        for threshold in THRESHOLDS:
            trial = offsets.copy()
            trial[c] = offset_for(threshold)
            score = _mean_dice(logits, labels, trial)
            if score > best + MIN_GAIN or (chosen and score > best):
                best, chosen = score, trial[c]
        offsets[c] = chosen
    return offsets, before, best


def output_bias(network: torch.nn.Module, num_classes: int) -> Optional[torch.Tensor]:
    """The bias of the network's last convolution when it has one output per class, else None."""
    last = None
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            last = module
    if last is None or last.bias is None or last.out_channels != num_classes:
        return None
    return last.bias


def add_class_offsets(network: torch.nn.Module, offsets: Sequence[float], probe: torch.Tensor) -> bool:
    """Add ``offsets`` to the network's output logits through its last convolution's bias.

    Checked on ``probe`` (one input batch): the logits must move by exactly the offsets (a head that
    normalises or gates its last convolution would not); otherwise nothing changes and False.
    """
    offsets_t = torch.as_tensor(np.asarray(offsets, dtype=np.float32))
    bias = output_bias(network, len(offsets_t))
    if bias is None:
        return False
    network.eval()
    with torch.no_grad():
        before = network(probe)
        original = bias.detach().clone()
        bias.add_(offsets_t.to(bias.device, bias.dtype))
        moved = network(probe) - before
        expected = offsets_t.to(moved.device).view(1, -1, *([1] * (moved.ndim - 2)))
        if not torch.allclose(moved, expected.expand_as(moved), atol=1e-3):
            bias.copy_(original)
            return False
    return True


def calibrate(network: torch.nn.Module, predict_logits: Callable[[torch.nn.Module, np.ndarray], np.ndarray],
              cases, num_classes: int, probe: torch.Tensor) -> Tuple[List[float], float, float, bool]:
    """Choose and bake the offsets on ``cases`` (validation parts); returns (offsets, Dice before,
    Dice after, applied)."""
    logits = [predict_logits(network, case.image) for case in cases]
    offsets, before, after = choose_offsets(logits, [case.label for case in cases])
    if not np.any(offsets):
        return [0.0] * num_classes, before, before, False
    applied = add_class_offsets(network, offsets, probe)
    return [float(v) for v in offsets], before, after if applied else before, applied
