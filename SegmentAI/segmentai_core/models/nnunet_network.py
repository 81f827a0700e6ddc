"""Networks of imported nnU-Net v2 models, built from the plans with ``dynamic-network-architectures``.

nnU-Net names its classes and layer types as dotted strings in ``plans.json`` and imports
whatever they say. Here every name is looked up in fixed allow-lists instead, so a plans file
cannot make SegmentAI import or run anything else. The folds of a model become one module,
:class:`FoldEnsemble`, whose output is the mean of the folds' logits (what nnU-Net's predictor
computes, since its sliding-window blending is linear).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List

from ..errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["NETWORK_CLASSES", "build_nnunet_ensemble", "resolve_layer"]

NETWORK_CLASSES = ("PlainConvUNet", "ResidualEncoderUNet")
"""``dynamic_network_architectures.architectures.unet`` classes that imported models may use."""

# Layer types nnU-Net plans may name (last component of the dotted name → torch.nn attribute).
_LAYERS: Dict[str, tuple] = {
    "conv_op": ("Conv2d", "Conv3d"),
    "norm_op": ("InstanceNorm2d", "InstanceNorm3d", "BatchNorm2d", "BatchNorm3d", "GroupNorm"),
    "dropout_op": ("Dropout", "Dropout2d", "Dropout3d"),
    "nonlin": ("LeakyReLU", "ReLU", "PReLU", "GELU", "ELU", "SiLU"),
}


def resolve_layer(key: str, dotted: Any) -> Any:
    """The ``torch.nn`` class a plans file names for ``key`` (``conv_op``, ``norm_op``, ...), or None."""
    import torch

    if dotted is None:
        return None
    if not isinstance(dotted, str) or not dotted.startswith("torch.nn."):
        raise ModelError(f"nnU-Net plans: '{key}' = {dotted!r} is not a torch.nn layer SegmentAI knows")
    name = dotted.rsplit(".", 1)[-1]
    if name not in _LAYERS.get(key, ()):
        raise ModelError(f"nnU-Net plans: '{key}' = {dotted!r} is not supported (known: {', '.join(_LAYERS[key])})")
    return getattr(torch.nn, name)


def _network_class(dotted: str) -> type:
    name = str(dotted).rsplit(".", 1)[-1]
    if name not in NETWORK_CLASSES:
        raise ModelError(
            f"nnU-Net network class '{dotted}' is not supported (supported: {', '.join(NETWORK_CLASSES)})"
        )
    try:
        from dynamic_network_architectures.architectures import unet
    except ImportError as error:
        raise ModelError(
            "nnU-Net models need the 'dynamic-network-architectures' package: pip install 'segmentai[nnunet]'"
        ) from error
    return getattr(unet, name)


def _build_one(args: Dict[str, Any]) -> "torch.nn.Module":
    kwargs = dict(args["network_kwargs"])
    for key in args.get("kwargs_requiring_import", []):
        kwargs[key] = resolve_layer(key, kwargs.get(key))
    cls = _network_class(args["network_class"])
    try:
        from ..inference.memory import check_parameter_size

        check_parameter_size(f"architecture nnU-Net {args['network_class'].rsplit('.', 1)[-1]}", lambda: cls(
            input_channels=int(args["in_channels"]), num_classes=int(args["out_channels"]), deep_supervision=False,
            **kwargs))  # absurd feature counts: refused before any allocation
        return cls(input_channels=int(args["in_channels"]), num_classes=int(args["out_channels"]),
                   deep_supervision=False, **kwargs)
    except (TypeError, ValueError, AssertionError, IndexError) as error:
        text = str(error).strip().splitlines()
        raise ModelError(f"nnU-Net network {args['network_class']} cannot be built from the plans: "
                         f"{text[0] if text else type(error).__name__}") from error


def build_nnunet_ensemble(args: Dict[str, Any]) -> "torch.nn.Module":
    """A :class:`FoldEnsemble` of untrained networks, one per name in ``args['folds']``."""
    import torch

    class FoldEnsemble(torch.nn.Module):
        """Mean logits of the folds; parameters are named ``folds.<fold>.<nnU-Net name>``."""

        def __init__(self, folds: List[str]) -> None:
            super().__init__()
            self.folds = torch.nn.ModuleDict({name: _build_one(args) for name in folds})

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            outputs = [network(x) for network in self.folds.values()]
            total = outputs[0]
            for other in outputs[1:]:
                total = total + other
            return total / len(outputs) if len(outputs) > 1 else total

    folds = [str(f) for f in args.get("folds", [])]
    if not folds:
        raise ModelError("nnU-Net architecture args list no folds")
    return FoldEnsemble(folds)
