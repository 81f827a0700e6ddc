"""The architectures SegmentAI runs: one row per ``architecture.name`` of a manifest.

Everything that depends on which network a manifest names is read from its row here, never from
a comparison of names elsewhere: how the network is built, what its input sizes must divide by,
whether its eval-mode output for a voxel is independent of the input's extent (so the whole volume
may run as one window), the activation memory per voxel, which parameters form its encoder (a lower
learning rate when fine-tuning), its inference pipeline (SegmentAI's generic one, or nnU-Net's own)
and the MONAI class a bundle's ``network_def`` names for it. Adding an architecture is adding a row.

``args`` are the manifest's ``architecture.args``; they go to the constructor as keyword arguments.
``spatial_dims``, ``in_channels`` and ``out_channels`` come from the manifest (dimensions, input
channels, labels + background), never from ``args`` (nnU-Net imports record them in their args).

MONAI's residual ``UNet`` (the bundled models) is built by :mod:`.fast_unet` in plain PyTorch with
the same parameter names, numbers and initialisation, so that loading a model does not import
MONAI (seconds); its other configurations use MONAI's class.
"""

from __future__ import annotations

import contextvars
import inspect
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..errors import ModelError

__all__ = ["ARCHITECTURES", "GENERIC", "NNUNET", "Architecture", "architecture_of", "build_network", "get",
           "size_divisor", "weights_follow"]

# True while a network is built only to take a full state dict at once (ModelPackage.load_network):
# a builder may then return it on the ``meta`` device (shapes, no memory), since a strict load with
# ``assign=True`` replaces every parameter and persistent buffer. A real build with its random
# initialisation was half of a cold model load.
_WEIGHTS_FOLLOW: contextvars.ContextVar = contextvars.ContextVar("segmentai_weights_follow", default=False)


@contextmanager
def weights_follow():
    """Within this block, :func:`build_network` may return a network on the ``meta`` device; the
    caller must then load a complete state dict strictly with ``assign=True``."""
    token = _WEIGHTS_FOLLOW.set(True)
    try:
        yield
    finally:
        _WEIGHTS_FOLLOW.reset(token)

GENERIC = "generic"
"""SegmentAI's pipeline: canonical grid, normalisation, sliding windows, restore onto the input grid."""
NNUNET = "nnunet"
"""nnU-Net's own preprocessing, windows and export (the manifest's ``x-nnunet`` block)."""

RESERVED_ARGS = ("spatial_dims", "in_channels", "out_channels")

Builder = Callable[[Dict[str, Any], int, int, int], Any]


def _no_divisor(args: Dict[str, Any], spatial_dims: int) -> Tuple[int, ...]:
    return (1,) * spatial_dims


def _never(_: Any) -> bool:
    return False


def _width_bytes(args: Dict[str, Any]) -> float:
    """Measured on MONAI's UNet (see bench/): about 60 float32 values per first-level channel per
    voxel at peak in inference; the estimate keeps a margin over that (80)."""
    width = (args.get("channels") or args.get("features") or [args.get("feature_size", 32)])[0]
    return 4.0 * 80 * float(width)


@dataclass(frozen=True)
class Architecture:
    """One row of the table. Callables take the manifest's ``args`` (with the row's defaults where noted)."""

    name: str
    build: Builder
    """``build(args, spatial_dims, in_channels, out_channels)``: an untrained network (args with defaults)."""
    default_args: Mapping[str, Any] = field(default_factory=dict)
    """Used where the manifest leaves an argument out: small, fast and stable."""
    divisor: Callable[[Dict[str, Any], int], Tuple[int, ...]] = _no_divisor
    """Per-axis number every input size must be a multiple of (args with defaults); manifest order."""
    extent_independent: Callable[[Dict[str, Any]], bool] = _never
    """Whether eval-mode output does not depend on the input's extent (the manifest's own args)."""
    bytes_per_voxel: Callable[[Dict[str, Any]], float] = _width_bytes
    """Activation memory of one forward pass per input voxel (the manifest's own args)."""
    encoder_key: Callable[[str], bool] = _never
    """Whether a parameter name belongs to the encoder; no encoder group when always False."""
    pipeline: str = GENERIC
    monai_class: Optional[str] = None
    """The class in ``monai.networks.nets`` (what a bundle's ``network_def`` names), if any."""
    sizes_in_args: bool = False
    """The args carry the channel counts themselves (imported nnU-Net plans)."""
    carries_code: bool = False
    """The weights file is a program holding its own network (TorchScript)."""

    def merged_args(self, args: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        merged = dict(self.default_args)
        merged.update(args or {})
        return merged


# --- builders -----------------------------------------------------------------------------------


def _monai_builder(class_name: str, needs: Tuple[str, ...] = ()) -> Builder:
    """Build ``monai.networks.nets.<class_name>``; unknown keyword arguments are refused by name."""

    def build(args: Dict[str, Any], spatial_dims: int, in_channels: int, out_channels: int):
        for module in needs:
            try:
                __import__(module)  # MONAI needs it at run time; fail here with a clear line
            except ImportError as error:
                raise ModelError(f"{class_name} models need the '{module}' package: pip install {module}") \
                    from error
        import monai.networks.nets

        from ..inference.memory import check_parameter_size

        cls = getattr(monai.networks.nets, class_name)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(args) - accepted)
        if unknown:
            raise ModelError(
                f"architecture.args: {class_name} does not accept {', '.join(repr(u) for u in unknown)} "
                f"(it accepts {', '.join(sorted(accepted - set(RESERVED_ARGS)))})"
            )
        try:
            check_parameter_size(f"architecture {class_name}", lambda: cls(
                spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **args))
            return cls(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **args)
        except (TypeError, ValueError, AssertionError) as error:
            raise ModelError(f"architecture {class_name} cannot be built from its args: {_first(error)}") from error

    return build


def _first(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _build_unet(args: Dict[str, Any], spatial_dims: int, in_channels: int, out_channels: int):
    if int(args.get("num_res_units", 0)) < 1:
        raise ModelError("architecture UNet is MONAI's residual UNet: args.num_res_units must be >= 1")
    # The same network in plain PyTorch (same parameter names, numbers and initialisation): importing
    # MONAI costs seconds per command. Arguments outside its subset fall through to MONAI's class.
    from ..inference.memory import check_parameter_size
    from .fast_unet import build_fast_unet

    try:
        # Sized on the meta device before anything is allocated.
        meta = check_parameter_size("architecture UNet",
                                    lambda: build_fast_unet(spatial_dims, in_channels, out_channels, args))
        if meta is not None and _WEIGHTS_FOLLOW.get() and _buffers_all_persistent(meta):
            return meta  # the weights follow (assigned to it): no second build, no random init
        fast = build_fast_unet(spatial_dims, in_channels, out_channels, args)
    except (TypeError, ValueError) as error:
        raise ModelError(f"architecture UNet cannot be built from its args: {_first(error)}") from error
    if fast is not None:
        return fast
    return _monai_builder("UNet")(args, spatial_dims, in_channels, out_channels)


def _buffers_all_persistent(network) -> bool:
    """Every buffer is in the state dict, so a strict load leaves nothing on the meta device."""
    return {name for name, _ in network.named_buffers()} <= set(network.state_dict())


def _build_nnunet(args: Dict[str, Any], spatial_dims: int, in_channels: int, out_channels: int):
    from .nnunet_network import build_nnunet_ensemble

    return build_nnunet_ensemble(args)


def _build_torchscript(args: Dict[str, Any], spatial_dims: int, in_channels: int, out_channels: int):
    raise ModelError("TorchScript models carry their own network: load them with ModelPackage.load_network")


# --- per-architecture rules -------------------------------------------------------------------


def _stride_divisor(args: Dict[str, Any], spatial_dims: int) -> Tuple[int, ...]:
    """U-Nets divide the size by each stride and concatenate skip connections: the product of the strides."""
    divisor = [1] * spatial_dims
    for stride in args.get("strides") or []:
        per_axis = list(stride) if isinstance(stride, (list, tuple)) else [stride] * spatial_dims
        if len(per_axis) != spatial_dims or not all(isinstance(s, int) and s > 0 for s in per_axis):
            raise ModelError(f"architecture.args.strides: {stride!r} is not a positive stride")
        divisor = [d * s for d, s in zip(divisor, per_axis)]
    return tuple(divisor)


def _swin_divisor(args: Dict[str, Any], spatial_dims: int) -> Tuple[int, ...]:
    patch = args.get("patch_size", 2)
    if not isinstance(patch, int) or patch < 1:
        raise ModelError("architecture.args.patch_size of SwinUNETR must be a positive integer")
    return (patch**5,) * spatial_dims


def _segresnet_divisor(args: Dict[str, Any], spatial_dims: int) -> Tuple[int, ...]:
    """SegResNet halves the size once per down stage after the first."""
    blocks = args.get("blocks_down", (1, 2, 2, 4))
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise ModelError("architecture.args.blocks_down of SegResNet must be a non-empty list")
    return (2 ** (len(blocks) - 1),) * spatial_dims


def _norm_is_batch_or_none(default: str) -> Callable[[Dict[str, Any]], bool]:
    """Eval-mode batch norm (or none) does not look at the rest of the volume; instance/group norm do."""

    def check(args: Dict[str, Any]) -> bool:
        norm = args.get("norm", default)
        name = norm[0] if isinstance(norm, (list, tuple)) else norm
        return str(name).lower() in ("batch", "none", "")

    return check


def _unet_encoder(key: str) -> bool:
    """MONAI's UNet nests as ``model.(1.submodule.)*[0 | 1 | 2]``: index 0 is the down block of a
    level, the innermost ``submodule`` the bottleneck, index 2 the up block."""
    rest = key[len("model."):] if key.startswith("model.") else key
    while rest.startswith("1.submodule."):
        rest = rest[len("1.submodule."):]
    return rest.startswith("0.") or not rest[:1].isdigit()


def _swin_encoder(key: str) -> bool:
    return key.startswith("swinViT.") or re.match(r"^encoder\d+\.", key) is not None


def _nnunet_encoder(key: str) -> bool:
    return re.match(r"^folds\.[^.]+\.encoder\.", key) is not None


def _segresnet_encoder(key: str) -> bool:
    return key.startswith(("convInit.", "down_layers."))


def _segresnet_bytes(args: Dict[str, Any]) -> float:
    return 4.0 * 80 * float(args.get("init_filters", 8))


# --- the table -------------------------------------------------------------------------------

_ROWS = (
    Architecture("UNet", _build_unet,
                 default_args={"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2},
                 divisor=_stride_divisor, extent_independent=_norm_is_batch_or_none("instance"),
                 encoder_key=_unet_encoder, monai_class="UNet"),
    Architecture("AttentionUnet", _monai_builder("AttentionUnet"),
                 default_args={"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2]},
                 divisor=_stride_divisor, extent_independent=_norm_is_batch_or_none("batch"),
                 monai_class="AttentionUnet"),
    Architecture("SwinUNETR", _monai_builder("SwinUNETR", needs=("einops",)), default_args={"feature_size": 24},
                 divisor=_swin_divisor, encoder_key=_swin_encoder, monai_class="SwinUNETR"),
    Architecture("SegResNet", _monai_builder("SegResNet"), divisor=_segresnet_divisor,
                 bytes_per_voxel=_segresnet_bytes, encoder_key=_segresnet_encoder, monai_class="SegResNet"),
    Architecture("TorchScript", _build_torchscript, carries_code=True),
    Architecture("nnUNet", _build_nnunet, encoder_key=_nnunet_encoder, pipeline=NNUNET, sizes_in_args=True),
)

ARCHITECTURES: Dict[str, Architecture] = {row.name: row for row in _ROWS}
"""Every name accepted in ``architecture.name``, with its row."""


def get(name: Any) -> Architecture:
    """The row of ``name``; ModelError naming the known ones otherwise."""
    row = ARCHITECTURES.get(name) if isinstance(name, str) else None
    if row is None:
        raise ModelError(f"unknown architecture '{name}' (known: {', '.join(ARCHITECTURES)})")
    return row


def architecture_of(spec: Any) -> Dict[str, Any]:
    """The ``{"name", "args"}`` dict from a manifest object, a manifest dict or the dict itself."""
    if isinstance(spec, dict):
        architecture = spec if "name" in spec else spec.get("architecture")
    else:
        architecture = getattr(spec, "architecture", None)
    if not isinstance(architecture, dict) or "name" not in architecture:
        raise ModelError("architecture must be an object with a 'name'")
    return architecture


def size_divisor(architecture: Dict[str, Any], spatial_dims: int) -> Tuple[int, ...]:
    """Per-axis number (manifest order) that every input size must be a multiple of (1 where there is no rule).

    Pure Python, so that the manifest can check its patch size without importing torch.
    """
    row = ARCHITECTURES.get(architecture.get("name"))
    if row is None:
        return (1,) * spatial_dims
    return row.divisor(row.merged_args(architecture.get("args")), spatial_dims)


def build_network(manifest_or_architecture: Any, spatial_dims: Optional[int] = None,
                  in_channels: Optional[int] = None, out_channels: Optional[int] = None):
    """Build an untrained network.

    ``manifest_or_architecture`` is a :class:`~.manifest.ModelManifest` (the three sizes then default
    to its dimensions, number of input channels and number of labels + 1), or an architecture dict
    ``{"name": ..., "args": {...}}`` (or a manifest dict holding one): the sizes are then required.
    """
    architecture = architecture_of(manifest_or_architecture)
    row = get(architecture["name"])
    if row.sizes_in_args:
        return row.build(dict(architecture.get("args") or {}), 0, 0, 0)
    if hasattr(manifest_or_architecture, "num_classes"):
        manifest = manifest_or_architecture
        spatial_dims = spatial_dims or manifest.dimensions
        in_channels = in_channels or len(manifest.input_channels)
        out_channels = out_channels or manifest.num_classes
    if spatial_dims not in (2, 3) or not in_channels or not out_channels:
        raise ModelError("build_network needs spatial_dims (2 or 3), in_channels and out_channels")
    args = row.merged_args(architecture.get("args"))
    for key in RESERVED_ARGS:
        if key in args:
            raise ModelError(
                f"architecture.args must not set '{key}': it comes from the manifest's "
                "dimensions, input_channels and labels"
            )
    return row.build(args, spatial_dims, in_channels, out_channels)
