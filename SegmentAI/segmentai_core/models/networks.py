"""Builds the network a manifest names from MONAI's own classes.

One exception, for start-up time: MONAI's residual ``UNet`` (the bundled models) is built by
:mod:`.fast_unet` in plain PyTorch with the same parameter names, numbers and initialisation, so
that loading a model does not import MONAI (seconds); other configurations use MONAI's class.

``architecture`` is the manifest's ``{"name": ..., "args": {...}}``; ``args`` go to the MONAI
constructor as keyword arguments. ``spatial_dims``, ``in_channels`` and ``out_channels`` come
from the manifest (dimensions, input channels, labels + background), never from ``args``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

from ..errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .manifest import ModelManifest

__all__ = ["ARCHITECTURES", "build_network", "size_divisor"]

ARCHITECTURES = ("UNet", "AttentionUnet", "SwinUNETR", "TorchScript", "nnUNet")
"""Names accepted in ``architecture.name``; TorchScript files carry their own network; ``nnUNet``
is an imported nnU-Net v2 model (its args come from the plans, see :mod:`.nnunet_network`)."""

_RESERVED_ARGS = ("spatial_dims", "in_channels", "out_channels")

# Defaults used when the manifest leaves an argument out: small, fast and stable.
_DEFAULT_ARGS: Dict[str, Dict[str, Any]] = {
    "UNet": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2},
    "AttentionUnet": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2]},
    "SwinUNETR": {"feature_size": 24},
}


def _architecture_of(spec: Union["ModelManifest", dict]) -> dict:
    """The ``{"name", "args"}`` dict from a manifest object, a manifest dict or the dict itself."""
    if isinstance(spec, dict):
        architecture = spec if "name" in spec else spec.get("architecture")
    else:
        architecture = getattr(spec, "architecture", None)
    if not isinstance(architecture, dict) or "name" not in architecture:
        raise ModelError("architecture must be an object with a 'name'")
    return architecture


def _merged_args(architecture: dict) -> Dict[str, Any]:
    name = architecture["name"]
    args = dict(_DEFAULT_ARGS.get(name, {}))
    args.update(architecture.get("args") or {})
    for key in _RESERVED_ARGS:
        if key in args:
            raise ModelError(
                f"architecture.args must not set '{key}': it comes from the manifest's "
                "dimensions, input_channels and labels"
            )
    return args


def size_divisor(architecture: dict, spatial_dims: int) -> Tuple[int, ...]:
    """Per-axis number that every input size must be a multiple of (1 where there is no rule).

    UNet and AttentionUnet divide the size by each stride and concatenate skip connections, so
    sizes must divide by the product of the strides; SwinUNETR needs ``patch_size ** 5``. Pure
    Python, so that the manifest can check its patch size without importing torch.
    """
    name = architecture.get("name")
    args = {**_DEFAULT_ARGS.get(name, {}), **(architecture.get("args") or {})}
    if name in ("UNet", "AttentionUnet"):
        divisor = [1] * spatial_dims
        for stride in args.get("strides") or []:
            per_axis = list(stride) if isinstance(stride, (list, tuple)) else [stride] * spatial_dims
            if len(per_axis) != spatial_dims or not all(isinstance(s, int) and s > 0 for s in per_axis):
                raise ModelError(f"architecture.args.strides: {stride!r} is not a positive stride")
            divisor = [d * s for d, s in zip(divisor, per_axis)]
        return tuple(divisor)
    if name == "SwinUNETR":
        patch = args.get("patch_size", 2)
        if not isinstance(patch, int) or patch < 1:
            raise ModelError("architecture.args.patch_size of SwinUNETR must be a positive integer")
        return (patch**5,) * spatial_dims
    return (1,) * spatial_dims


def _monai_class(name: str) -> type:
    if name == "UNet":
        from monai.networks.nets import UNet

        return UNet
    if name == "AttentionUnet":
        from monai.networks.nets import AttentionUnet

        return AttentionUnet
    if name == "SwinUNETR":
        try:
            import einops  # noqa: F401  (MONAI needs it at run time; fail here with a clear line)
        except ImportError as error:
            raise ModelError("SwinUNETR models need the 'einops' package: pip install einops") from error
        from monai.networks.nets import SwinUNETR

        return SwinUNETR
    if name == "TorchScript":
        raise ModelError("TorchScript models carry their own network: load them with ModelPackage.load_network")
    raise ModelError(f"unknown architecture '{name}' (known: {', '.join(ARCHITECTURES)})")


def build_network(
    manifest_or_architecture: Union["ModelManifest", dict],
    spatial_dims: Optional[int] = None,
    in_channels: Optional[int] = None,
    out_channels: Optional[int] = None,
) -> "torch.nn.Module":
    """Build an untrained MONAI network.

    ``manifest_or_architecture`` is a :class:`ModelManifest` (the three sizes then default to its
    dimensions, number of input channels and number of labels + 1), or an architecture dict
    ``{"name": ..., "args": {...}}`` (or a manifest dict holding one): the sizes are then required.
    """
    architecture = _architecture_of(manifest_or_architecture)
    if architecture["name"] == "nnUNet":  # sizes come from the plans, recorded in the args
        from .nnunet_network import build_nnunet_ensemble

        return build_nnunet_ensemble(dict(architecture.get("args") or {}))
    if hasattr(manifest_or_architecture, "num_classes"):
        manifest = manifest_or_architecture
        spatial_dims = spatial_dims or manifest.dimensions
        in_channels = in_channels or len(manifest.input_channels)
        out_channels = out_channels or manifest.num_classes
    if spatial_dims not in (2, 3) or not in_channels or not out_channels:
        raise ModelError("build_network needs spatial_dims (2 or 3), in_channels and out_channels")
    name = architecture["name"]
    args = _merged_args(architecture)
    if name == "UNet" and int(args.get("num_res_units", 0)) < 1:
        raise ModelError("architecture UNet is MONAI's residual UNet: args.num_res_units must be >= 1")
    if name == "UNet":
        # The same network in plain PyTorch (same parameter names, numbers and initialisation): importing
        # MONAI costs seconds per command. Arguments outside its subset fall through to MONAI's class.
        from .fast_unet import build_fast_unet

        try:
            # Sized on the meta device before anything is allocated.
            _check_size(name, lambda: build_fast_unet(spatial_dims, in_channels, out_channels, args))
            fast = build_fast_unet(spatial_dims, in_channels, out_channels, args)
            if fast is not None:
                return fast
        except (TypeError, ValueError) as error:
            text = str(error).strip()
            raise ModelError(f"architecture {name} cannot be built from its args: "
                             f"{text.splitlines()[0] if text else type(error).__name__}") from error
    cls = _monai_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ModelError(
            f"architecture.args: {name} does not accept {', '.join(repr(u) for u in unknown)} "
            f"(it accepts {', '.join(sorted(accepted - set(_RESERVED_ARGS)))})"
        )
    try:
        _check_size(name, lambda: cls(spatial_dims=spatial_dims, in_channels=in_channels,
                                      out_channels=out_channels, **args))
        return cls(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **args)
    except (TypeError, ValueError, AssertionError) as error:
        text = str(error).strip()
        first = text.splitlines()[0] if text else type(error).__name__
        raise ModelError(f"architecture {name} cannot be built from its args: {first}") from error


def _check_size(name: str, build) -> None:
    """Refuse, before allocating, a network whose parameters alone would not fit in the available memory.

    The network is first built on PyTorch's ``meta`` device, which records shapes and allocates nothing.
    """
    import torch

    from ..inference.memory import GIB, available_ram_bytes

    try:
        with torch.device("meta"):
            network = build()
    except (RuntimeError, NotImplementedError):
        return  # a network whose constructor computes with tensors (SwinUNETR): built for real below
    if network is None:
        return
    size = sum(p.numel() * p.element_size() for p in network.parameters())
    limit = available_ram_bytes() * 0.75
    if size > limit:
        raise ModelError(f"architecture {name}: its parameters alone need {size / GIB:.1f} GiB, more than the "
                         f"{limit / GIB:.1f} GiB of memory available (implausible layer widths)")
