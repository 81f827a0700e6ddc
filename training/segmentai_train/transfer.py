"""Transfer learning from a model package: which weights to keep, which part is the encoder.

Same labels (names in the same class order): every weight is kept and training continues. A new
label set: the segmentation head (the trailing layers that output one channel per class) is
re-initialised and everything else is kept, as nnU-Net does when it loads pretrained weights.
"""

from __future__ import annotations

import os
import re
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
    """Whether a parameter belongs to the contracting path (encoder) of the network.

    MONAI's UNet nests as ``model.(1.submodule.)*[0 | 1 | 2]``: index 0 is the down block of a
    level, the innermost ``submodule`` the bottleneck, index 2 the up block. SwinUNETR's encoder
    is its ``swinViT`` and ``encoder*`` blocks. Imported nnU-Net networks (``folds.<fold>.``) have
    an ``encoder`` module. Other architectures have no encoder group (one rate).
    """
    if architecture == "UNet":
        rest = key[len("model."):] if key.startswith("model.") else key
        while rest.startswith("1.submodule."):
            rest = rest[len("1.submodule."):]
        return rest.startswith("0.") or not rest[:1].isdigit()
    if architecture == "nnUNet":
        return re.match(r"^folds\.[^.]+\.encoder\.", key) is not None
    if architecture == "SwinUNETR":
        return key.startswith("swinViT.") or re.match(r"^encoder\d+\.", key) is not None
    return False


def build_finetune_network(source_package, num_classes: int, keep_head: bool, seed: int = 0) -> Tuple[
        torch.nn.Module, Dict[str, int]]:
    """The source network with its weights, re-initialising the head unless ``keep_head``.

    Returns the network and counts of kept and re-initialised tensors.
    """
    from segmentai_core.models.networks import build_network

    manifest = source_package.manifest
    source = source_package.load_network("cpu")
    torch.manual_seed(seed)
    network = build_network(manifest, out_channels=num_classes)
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
    encoder, rest = [], []
    for name, parameter in network.named_parameters():
        (encoder if is_encoder_key(name, architecture) else rest).append(parameter)
    groups = [{"params": rest, "lr_scale": 1.0, "name": "decoder"}]
    if encoder:
        groups.append({"params": encoder, "lr_scale": encoder_lr_scale, "name": "encoder"})
    return groups
