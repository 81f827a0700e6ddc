"""What fine-tuning needs from one kind of source model: data, network, patch, validation, package writer.

``prepare_finetune`` picks the kind: SegmentAI's own MONAI-network packages (canonical grid,
the manifest's preprocessing) or imported nnU-Net packages (:mod:`.nnunet_finetune`: nnU-Net's
preprocessing, one fold, plans kept). The training loop in :mod:`.finetune` is the same for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

from segmentai_core.errors import InputError, ModelError

from .finetune_setup import FinetuneSetup
from .sampling import CanonicalCase

__all__ = ["FinetuneSetup", "prepare_finetune", "canonical_setup"]


def canonical_setup(source, data: Path, config, device: torch.device) -> FinetuneSetup:
    """SegmentAI's own packages: cases on the canonical grid, head kept for the same labels."""
    from segmentai_core.geometry import ijk_to_kji, kji_to_ijk
    from segmentai_core.models.package import write_model_package

    from .data import load_training_data
    from .data_plan import fingerprint, plan, plan_postprocessing
    from .transfer import build_finetune_network, same_labels
    from .validation import mean_dice, predict_logits

    manifest = source.manifest
    if manifest.architecture_row.carries_code:
        raise ModelError(f"model '{manifest.id}' is TorchScript: fine-tune the original (state-dict) package")
    if config.source_fold is not None:
        raise InputError(f"--nnunet-fold applies to imported nnU-Net models; '{manifest.id}' is not one")
    divisor_kji = manifest.size_divisor_kji
    patch_kji = ijk_to_kji(config.patch_size) if config.patch_size else manifest.patch_size_kji
    if len(patch_kji) != 3 or any(p % d for p, d in zip(patch_kji, divisor_kji)):
        raise InputError(f"--patch-size must be 3 sizes, multiples of {list(kji_to_ijk(divisor_kji))}")
    decided: Dict[str, Any] = {}

    def planner(raw, info) -> Dict[str, Any]:
        """Modality, normalisation and spacing from the cases themselves (:mod:`.data_plan`)."""
        names = list(info.foreground.values())
        channel = next(iter(info.channel_names.values()), "")
        chosen = plan(manifest, fingerprint(raw, channel), same_labels([label.name for label in manifest.labels],
                                                                        names), kji_to_ijk(patch_kji))
        decided["plan"] = chosen
        return chosen.preprocessing

    training = load_training_data(Path(data), manifest.preprocessing, planner=planner if config.plan_data else None)
    num_classes = len(training.class_names) + 1
    keep_head = same_labels([label.name for label in manifest.labels], training.class_names)
    network, _ = build_finetune_network(source, num_classes, keep_head, seed=config.seed,
                                        from_scratch=config.from_scratch)
    updates: Dict[str, Any] = {}
    reasons: List[str] = []
    if "plan" in decided:
        chosen = decided["plan"]
        post, post_reasons = plan_postprocessing(manifest.postprocessing, [c.label for c in training.cases],
                                                 num_classes, chosen.class_ranges)
        updates = {"modality": chosen.modality, "input_channels": chosen.input_channels,
                   "preprocessing": chosen.preprocessing, "postprocessing": post}
        if keep_head:  # the parent's own labels: its postprocessing stays
            updates.pop("postprocessing")
        reasons = chosen.reasons + ([] if keep_head else post_reasons)

    def evaluate(network: torch.nn.Module, cases: Sequence[CanonicalCase]) -> float:
        return mean_dice(network, cases, num_classes, divisor_kji, device)

    def logits(network: torch.nn.Module, image):
        return predict_logits(network, image, divisor_kji, device)

    return FinetuneSetup(training, network, num_classes, keep_head, patch_kji, evaluate, manifest.architecture_name,
                         write_model_package, manifest_updates=updates, plan_reasons=reasons,
                         divisor_kji=divisor_kji if config.plan_data and not config.patch_size else (),
                         left_right_axis=2, predict_logits=logits)


def prepare_finetune(source, data: Path, config, device: torch.device) -> FinetuneSetup:
    """The setup for ``source`` (a ModelPackage): nnU-Net imports or SegmentAI's own networks."""
    from segmentai_core.models.architectures import NNUNET

    if source.manifest.architecture_row.pipeline == NNUNET:
        from .nnunet_finetune import nnunet_setup

        return nnunet_setup(source, data, config, device)
    return canonical_setup(source, data, config, device)
