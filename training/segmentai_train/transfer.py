"""Transfer learning from a model package: which weights to keep, which part is the encoder.

Same labels (names in the same class order): every weight is kept and training continues. A new
label set: the segmentation head (the trailing layers that output one channel per class) is
re-initialised and everything else is kept, as nnU-Net does when it loads pretrained weights.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import torch

__all__ = ["head_prefix", "is_encoder_key", "build_finetune_network", "parameter_groups", "same_labels"]


def same_labels(source_names: Sequence[str], target_names: Sequence[str]) -> bool:
    """True when both label lists name the same classes in the same order (case-insensitive)."""
    return [n.strip().lower() for n in source_names] == [n.strip().lower() for n in target_names]


def head_prefix(network: torch.nn.Module, num_classes: int) -> str:
    """Module path of the segmentation head: the common prefix of the trailing convolutions whose
    output has ``num_classes`` channels (``model.2.`` for MONAI's UNet)."""
    convs: List[Tuple[str, int]] = []
    for name, module in network.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            convs.append((name, module.out_channels))
    trailing = []
    for name, out in reversed(convs):
        if out != num_classes:
            break
        trailing.append(name)
    if not trailing:
        raise ValueError("cannot find the segmentation head of this network")
    parts = os.path.commonprefix([n.split(".") for n in trailing])
    if len(trailing) == 1:
        parts = trailing[0].split(".")
    return ".".join(parts) + "."


def is_encoder_key(key: str, architecture: str) -> bool:
    """Whether a parameter belongs to the contracting path (encoder) of the network: the rule of
    the architecture's row in :mod:`segmentai_core.models.architectures` (none: one rate for all)."""
    from segmentai_core.models import architectures

    return bool(architectures.get(architecture).encoder_key(key))


def build_finetune_network(source_package, num_classes: int, keep_head: bool, seed: int = 0,
                           from_scratch: bool = False) -> Tuple[torch.nn.Module, Dict[str, int]]:
    """The source network with its weights, re-initialising the head unless ``keep_head``.

    ``from_scratch``: the same architecture with every weight freshly initialised (the baseline a
    benchmark compares transfer learning with). Returns the network and counts of kept and
    re-initialised tensors.
    """
    from segmentai_core.models.networks import build_network

    manifest = source_package.manifest
    torch.manual_seed(seed)
    network = build_network(manifest, out_channels=num_classes)
    if from_scratch:
        return network, {"kept": 0, "reinitialised": len(network.state_dict())}
    source = source_package.load_network("cpu")
    state = source.state_dict()
    if keep_head:
        network.load_state_dict(state, strict=True)
        return network, {"kept": len(state), "reinitialised": 0}
    prefix = head_prefix(source, manifest.num_classes)
    target = network.state_dict()
    kept = {k: v for k, v in state.items() if not k.startswith(prefix) and k in target and v.shape == target[k].shape}
    target.update(kept)
    network.load_state_dict(target, strict=True)
    return network, {"kept": len(kept), "reinitialised": len(target) - len(kept)}


def parameter_groups(network: torch.nn.Module, architecture: str, encoder_lr_scale: float) -> List[Dict]:
    """Two optimiser groups, encoder and the rest; ``lr_scale`` multiplies the schedule's rate."""
    from segmentai_core.models import architectures

    is_encoder = architectures.get(architecture).encoder_key
    encoder, rest = [], []
    for name, parameter in network.named_parameters():
        (encoder if is_encoder(name) else rest).append(parameter)
    groups = [{"params": rest, "lr_scale": 1.0, "name": "decoder"}]
    if encoder:
        groups.append({"params": encoder, "lr_scale": encoder_lr_scale, "name": "encoder"})
    return groups
