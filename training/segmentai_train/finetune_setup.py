"""What fine-tuning needs from one kind of source model (the result of :mod:`.model_setup` and
:mod:`.nnunet_finetune`, kept apart so that neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data import TrainingData
from .sampling import CanonicalCase

__all__ = ["FinetuneSetup", "Evaluate", "WritePackage", "PredictLogits"]

Evaluate = Callable[[torch.nn.Module, Sequence[CanonicalCase]], float]
WritePackage = Callable[[Path, Dict[str, Any], Dict[str, torch.Tensor]], Any]
PredictLogits = Callable[[torch.nn.Module, np.ndarray], np.ndarray]  # (network, canonical image) -> (C, k, j, i)


@dataclass
class FinetuneSetup:
    """A source model made ready for training on one dataset."""

    training: TrainingData
    network: torch.nn.Module  # on the CPU, weights loaded (head re-initialised unless keep_head)
    num_classes: int  # network outputs, background included
    keep_head: bool
    patch_kji: Tuple[int, ...]  # training patch in the arrays' axis order
    evaluate: Evaluate  # mean foreground Dice of a network over cases
    architecture: str  # decides the encoder parameter group
    write_package: WritePackage  # (folder, manifest dict, state dict) -> ModelPackage, whole or nothing
    grid: str = "canonical grid"  # where validation Dice is measured (said in the manifest)
    manifest_updates: Dict[str, Any] = field(default_factory=dict)  # top-level manifest fields the data decided
    plan_reasons: List[str] = field(default_factory=list)  # one sentence per data-aware decision
    divisor_kji: Tuple[int, ...] = ()  # the network's size divisor; set: the training patch may shrink to the data
    left_right_axis: Optional[int] = None  # array axis of left-right (canonical RAS grid: 2); None: unknown
    predict_logits: Optional[PredictLogits] = None  # set: the class thresholds may be calibrated (:mod:`.calibration`)
