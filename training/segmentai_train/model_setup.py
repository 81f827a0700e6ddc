"""What fine-tuning needs from one kind of source model: data, network, patch, validation, package writer.

``prepare_finetune`` picks the kind: SegmentAI's own MONAI-network packages (canonical grid,
the manifest's preprocessing) or imported nnU-Net packages (:mod:`.nnunet_finetune`: nnU-Net's
preprocessing, one fold, plans kept). The training loop in :mod:`.finetune` is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple

import torch

from segmentai_core.errors import InputError, ModelError

from .data import TrainingData
from .sampling import CanonicalCase

__all__ = ["FinetuneSetup", "prepare_finetune", "canonical_setup"]

Evaluate = Callable[[torch.nn.Module, Sequence[CanonicalCase]], float]
WritePackage = Callable[[Path, Dict[str, Any], Dict[str, torch.Tensor]], Any]


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


def canonical_setup(source, data: Path, config, device: torch.device) -> FinetuneSetup:
    """SegmentAI's own packages: cases on the canonical grid, head kept for the same labels."""
    from segmentai_core.models.networks import size_divisor
    from segmentai_core.models.package import write_model_package

    from .data import load_training_data
    from .transfer import build_finetune_network, same_labels
    from .validation import mean_dice

    manifest = source.manifest
    if manifest.architecture_name == "TorchScript":
        raise ModelError(f"model '{manifest.id}' is TorchScript: fine-tune the original (state-dict) package")
    if config.source_fold is not None:
        raise InputError(f"--nnunet-fold applies to imported nnU-Net models; '{manifest.id}' is not one")
    training = load_training_data(Path(data), manifest.preprocessing)
    num_classes = len(training.class_names) + 1
    keep_head = same_labels([label.name for label in manifest.labels], training.class_names)
    network, _ = build_finetune_network(source, num_classes, keep_head, seed=config.seed)
    divisor_kji = tuple(reversed(size_divisor(manifest.architecture, manifest.dimensions)))
    patch_kji = tuple(reversed(config.patch_size or manifest.patch_size))
    if len(patch_kji) != 3 or any(p % d for p, d in zip(patch_kji, divisor_kji)):
        raise InputError(f"--patch-size must be 3 sizes, multiples of {list(reversed(divisor_kji))}")

    def evaluate(network: torch.nn.Module, cases: Sequence[CanonicalCase]) -> float:
        return mean_dice(network, cases, num_classes, divisor_kji, device)

    return FinetuneSetup(training, network, num_classes, keep_head, patch_kji, evaluate, manifest.architecture_name,
                         write_model_package)


def prepare_finetune(source, data: Path, config, device: torch.device) -> FinetuneSetup:
    """The setup for ``source`` (a ModelPackage): nnU-Net imports or SegmentAI's own networks."""
    if source.manifest.architecture_name == "nnUNet":
        from .nnunet_finetune import nnunet_setup

        return nnunet_setup(source, data, config, device)
    return canonical_setup(source, data, config, device)
