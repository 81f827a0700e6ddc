"""Validation Dice on whole canonical volumes (the engine's whole-volume path, without resampling back)."""

from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch

from .sampling import CanonicalCase

__all__ = ["predict_logits", "predict_classes", "case_dice", "mean_dice"]


def predict_logits(network: torch.nn.Module, array: np.ndarray, divisor_kji: Sequence[int],
                   device: torch.device) -> np.ndarray:
    """Logits (C, k, j, i) of one whole canonical volume, zero-padded to fit the network."""
    shape = np.array(array.shape)
    divisor = np.array(divisor_kji)
    padded = (np.ceil(shape / divisor) * divisor).astype(int)
    x = np.zeros(padded, dtype=np.float32)  # the engine pads with zeros too
    x[: shape[0], : shape[1], : shape[2]] = array
    network.eval()
    with torch.inference_mode():
        logits = network(torch.from_numpy(x)[None, None].to(device))[0]
    return logits.float().cpu().numpy()[:, : shape[0], : shape[1], : shape[2]]


def predict_classes(network: torch.nn.Module, array: np.ndarray, divisor_kji: Sequence[int],
                    device: torch.device) -> np.ndarray:
    """Arg-max class map of one whole canonical volume, zero-padded to fit the network."""
    return predict_logits(network, array, divisor_kji, device).argmax(0).astype(np.uint8)


def case_dice(prediction: np.ndarray, reference: np.ndarray, num_classes: int) -> List[float]:
    """Dice per foreground class (1.0 when a class is absent from both)."""
    scores = []
    for c in range(1, num_classes):
        a, b = prediction == c, reference == c
        denom = int(a.sum()) + int(b.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((a & b).sum()) / denom)
    return scores


def mean_dice(network: torch.nn.Module, cases: Sequence[CanonicalCase], num_classes: int,
              divisor_kji: Sequence[int], device: torch.device) -> float:
    """Mean over cases of the mean foreground-class Dice."""
    values = [float(np.mean(case_dice(predict_classes(network, c.image, divisor_kji, device), c.label, num_classes)))
              for c in cases]
    return float(np.mean(values)) if values else float("nan")
