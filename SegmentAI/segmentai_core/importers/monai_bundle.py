"""Import a MONAI bundle (``configs/metadata.json``, ``configs/inference.json``, ``models/model.pt``).

A bundle's config is a small program: ``$`` strings are Python expressions and ``_target_``
names any class. SegmentAI never evaluates it. The importer reads it as plain data
(:class:`.bundle_config.BundleConfig`: references followed, expressions of literals such as
``$[1.5] * 3 if @flag else ...`` worked out by hand, anything else refused) and maps
what has an exact equivalent in a SegmentAI manifest: the network (``network_def`` naming
a MONAI class that is an architecture of :mod:`..models.architectures`, such as UNet,
AttentionUnet, SwinUNETR or SegResNet, with literal arguments), the preprocessing
transforms (orientation, spacing, intensity scaling), the sliding-window inferer (window,
overlap, constant or Gaussian blending, with MONAI's defaults where the config is silent) and a
soft-max + arg-max postprocessing; labels come from the metadata's ``channel_def``. Anything
else is refused with one line naming it, rather than imported to behave differently. Weights
(``model.pt``, a state dict or ``{"model": state_dict}``) are read without running pickled code
and stored as safetensors.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import ModelError
from ..labels import SegmentLabel
from .bundle_config import BundleConfig, read_config
from .bundle_config import target_name as _target
from .checkpoint import load_checkpoint
from .nnunet import _sha256, _slug

__all__ = ["is_monai_bundle", "convert_monai_bundle"]

_IGNORED_TRANSFORMS = {"LoadImaged", "LoadImage", "EnsureChannelFirstd", "EnsureChannelFirst", "EnsureTyped",
                       "EnsureType", "ToTensord", "ToTensor", "CastToTyped", "CastToType", "AddChanneld",
                       "CropForegroundd", "Identityd"}
_META_KEYS = {"_target_", "_requires_", "_disabled_", "_desc_", "_mode_"}


def is_monai_bundle(folder: Union[str, Path]) -> bool:
    """True for a folder holding ``configs/metadata.json`` (a MONAI bundle)."""
    return (Path(folder) / "configs" / "metadata.json").is_file()


Notes = List[str]
"""What the import could carry over only approximately: written into the manifest's notes."""

# Network arguments a bundle may pass that MONAI has since removed, and why dropping them is exact.
_REMOVED_ARGS = {
    ("SwinUNETR", "img_size"): "MONAI deprecated it in 1.3 (it was only checked, never used to build the network) "
                               "and removed it in 1.5; the input size is checked at run time instead",
}
_STATISTICS = {"NormalizeIntensityd", "ScaleIntensityd", "ScaleIntensityRangePercentilesd"}


def _transforms(config: BundleConfig) -> List[Dict[str, Any]]:
    pre = config.get("preprocessing")
    if _target(pre) == "Compose":
        pre = config.resolve(pre.get("transforms"))
    if not isinstance(pre, list):
        raise ModelError("inference config: 'preprocessing' must be a Compose of transforms")
    return [config.resolve(t) for t in pre]


def _scaled(args: Dict[str, Any], normalization: Dict[str, Any]) -> Dict[str, Any]:
    """ScaleIntensityd (min-max to [minv, maxv]) after NormalizeIntensityd: the z-score's ``rescale``."""
    if normalization.get("type") != "zscore" or "rescale" in normalization:
        raise ModelError("inference config: ScaleIntensityd is imported only right after NormalizeIntensityd")
    if args.get("factor") is not None or args.get("channel_wise") or args.get("minv") is None \
            or args.get("maxv") is None:
        raise ModelError("inference config: ScaleIntensityd is imported only as a min-max scaling (minv, maxv)")
    low, high = float(args["minv"]), float(args["maxv"])
    if not low < high:
        raise ModelError("inference config: ScaleIntensityd needs minv < maxv")
    return {**normalization, "rescale": [low, high]}


def _preprocessing(config: BundleConfig) -> Dict[str, Any]:
    orientation, spacing, normalization = None, None, {"type": "none"}
    for item in _transforms(config):
        name = _target(item)
        if config.literal(item.get("_disabled_", False), f"{name}._disabled_") is True or name in _IGNORED_TRANSFORMS:
            continue
        args = {k: config.literal(v, f"{name}.{k}") for k, v in item.items() if k not in _META_KEYS and k != "keys"}
        if name in _STATISTICS and spacing is None:  # SegmentAI normalises on the resampled grid, as MONAI here
            raise ModelError(f"inference config: {name} before Spacingd is not imported (SegmentAI normalises "
                             "after resampling)")
        if name == "Orientationd":
            orientation = str(args.get("axcodes", "RAS")).upper()
        elif name == "Spacingd":
            pixdim = args.get("pixdim")
            spacing = [float(v) for v in (pixdim if isinstance(pixdim, list) else [pixdim] * 3)]
        elif name == "ScaleIntensityRanged":
            if float(args.get("b_min", 0)) != 0 or float(args.get("b_max", 1)) != 1 or not args.get("clip", False):
                raise ModelError("inference config: ScaleIntensityRanged is imported only with b_min 0, b_max 1, clip")
            normalization = {"type": "ct_window", "window": [float(args["a_min"]), float(args["a_max"])]}
        elif name == "ScaleIntensityRangePercentilesd":
            if float(args.get("b_min", 0)) != 0 or float(args.get("b_max", 1)) != 1 or not args.get("clip", False):
                raise ModelError("inference config: ScaleIntensityRangePercentilesd needs b_min 0, b_max 1, clip")
            normalization = {"type": "percentile", "lower": float(args["lower"]), "upper": float(args["upper"])}
        elif name == "NormalizeIntensityd":
            if args.get("subtrahend") is not None or args.get("divisor") is not None:
                raise ModelError("inference config: NormalizeIntensityd is imported only with its own statistics")
            normalization = {"type": "zscore", "nonzero": bool(args.get("nonzero", False))}
        elif name == "ScaleIntensityd":
            normalization = _scaled(args, normalization)
        else:
            raise ModelError(f"inference config: transform {name or item!r} has no SegmentAI equivalent")
    if orientation is None or spacing is None:
        raise ModelError("inference config: the preprocessing needs Orientationd and Spacingd to be imported")
    return {"orientation": orientation, "target_spacing": spacing, "normalization": normalization}


def _one_number(config: BundleConfig, value: Any, where: str) -> float:
    """A number, or a per-axis sequence whose items are all equal (the manifest holds one value)."""
    value = config.literal(value, where)
    if isinstance(value, (list, tuple)):
        if not value or any(float(v) != float(value[0]) for v in value):
            raise ModelError(f"inference config: {where} = {value!r} differs per axis; SegmentAI imports one value")
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise ModelError(f"inference config: {where} = {value!r} is not a number") from error


def _inference(config: BundleConfig, notes: Notes) -> Dict[str, Any]:
    """The SlidingWindowInferer's window, overlap and blending, with MONAI's own defaults when absent."""
    inferer = config.get("inferer")
    if _target(inferer) != "SlidingWindowInferer":
        raise ModelError(f"inference config: inferer {_target(inferer) or inferer!r} is not imported "
                         "(SlidingWindowInferer is)")
    roi = config.literal(inferer.get("roi_size"), "inferer.roi_size")
    roi = [int(v) for v in (roi if isinstance(roi, list) else [roi] * 3)]
    # MONAI's defaults: constant blending, overlap 0.25, sigma_scale 0.125 (only used by gaussian).
    mode = str(config.literal(inferer.get("mode", "constant"), "inferer.mode")).lower()
    if mode not in ("constant", "gaussian"):
        raise ModelError(f"inference config: inferer.mode = {mode!r} is not imported (constant and gaussian are)")
    padding = str(config.literal(inferer.get("padding_mode", "constant"), "inferer.padding_mode")).lower()
    if padding not in ("constant", "replicate") or _one_number(config, inferer.get("cval", 0.0), "inferer.cval"):
        raise ModelError("inference config: the inferer is imported only with zero padding (padding_mode "
                         "constant, cval 0) or replicate padding")
    if padding == "replicate":  # MONAI pads only an image smaller than the window: equal on larger ones
        notes.append(f"The bundle pads an image smaller than its {'x'.join(map(str, roi))} window (after "
                     "resampling) by repeating its edge; SegmentAI pads with zeros, so results on such small "
                     "images may differ; on larger ones they are the same.")
    inference: Dict[str, Any] = {
        "patch_size": roi,
        "overlap": _one_number(config, inferer.get("overlap", 0.25), "inferer.overlap"),
        "crop_foreground": False,
        "blend_mode": mode,
    }
    if mode == "gaussian":
        inference["sigma_scale"] = _one_number(config, inferer.get("sigma_scale", 0.125), "inferer.sigma_scale")
    return inference


def _check_postprocessing(config: BundleConfig, notes: Notes) -> None:
    post = config.get("postprocessing")
    items = config.resolve(post.get("transforms", [])) if _target(post) == "Compose" else post or []
    items = [config.resolve(t) for t in items]
    names = [_target(t) for t in items]
    for item in items:
        if _target(item) == "Activationsd" and not config.literal(item.get("softmax", False), "Activationsd.softmax"):
            raise ModelError("inference config: only soft-max outputs are imported (Activationsd softmax=true)")
    if "AsDiscreted" not in names and "Activationsd" not in names:
        raise ModelError("inference config: the postprocessing must be a soft-max/arg-max (Activationsd, AsDiscreted)")
    if "Invertd" in names and "AsDiscreted" in names and names.index("AsDiscreted") < names.index("Invertd"):
        notes.append("The bundle takes the arg-max on its own grid and resamples the labels to the input (nearest "
                     "neighbour); SegmentAI resamples the probabilities and then takes the arg-max, so boundaries "
                     "may differ by a voxel where the input's spacing differs from the model's.")


def _monai_networks() -> Dict[str, str]:
    """MONAI class name (a bundle's ``network_def``) → SegmentAI architecture name, from the table."""
    from ..models.architectures import ARCHITECTURES

    return {row.monai_class: row.name for row in ARCHITECTURES.values() if row.monai_class}


def _network(config: BundleConfig, notes: Notes) -> Tuple[str, Dict[str, Any], int, int]:
    network = config.get("network_def")
    name = _target(network)
    networks = _monai_networks()
    if name not in networks:
        raise ModelError(f"inference config: network {name or network!r} is not imported "
                         f"(known: {', '.join(networks)})")
    args = {k: config.literal(v, f"network_def.{k}") for k, v in network.items() if k not in _META_KEYS}
    for (monai_class, key), why in _REMOVED_ARGS.items():
        if monai_class == name and key in args and not _accepts(name, key):
            notes.append(f"network_def.{key} = {args.pop(key)!r} was left out: {why}.")
    architecture = networks[name]
    _fill_monai_defaults(name, architecture, args)
    dims = int(args.pop("spatial_dims", 3))
    if dims != 3:
        raise ModelError("inference config: only 3D bundles are imported")
    return architecture, args, int(args.pop("in_channels")), int(args.pop("out_channels"))


def _accepts(monai_class: str, key: str) -> bool:
    """Whether the installed MONAI's ``monai_class`` still takes the argument ``key``."""
    import inspect

    import monai.networks.nets

    return key in inspect.signature(getattr(monai.networks.nets, monai_class).__init__).parameters


def _weights_path(folder: Path, config: BundleConfig) -> Path:
    """The weights the bundle's checkpoint loader reads (``models/model.pt`` unless it says otherwise, e.g. the
    Model Zoo's ``'model.pt' if @highres else 'model_lowres.pt'``), a file inside the bundle's ``models/``."""
    default = folder / "models" / "model.pt"
    loader = config.get("checkpointloader")
    if _target(loader) != "CheckpointLoader" or "load_path" not in loader:
        return default
    try:
        path = config.literal(loader["load_path"], "checkpointloader.load_path")
        root = config.literal(config.data.get("bundle_root", "."), "bundle_root")
    except ModelError:
        return default
    if not isinstance(path, str) or not isinstance(root, str) or not path.startswith(root):
        return default
    relative = PurePosixPath(path[len(root):].lstrip("/"))
    if relative.parts[:1] != ("models",) or ".." in relative.parts or relative.suffix != ".pt":
        raise ModelError(f"inference config: the checkpoint {path!r} is not a .pt file in the bundle's models/")
    return folder.joinpath(*relative.parts)


def _fill_monai_defaults(monai_class: str, architecture: str, args: Dict[str, Any]) -> None:
    """Arguments the bundle leaves out are MONAI's defaults, not SegmentAI's: write those down where
    SegmentAI's own default differs (UNet's ``num_res_units``: MONAI 0, SegmentAI 2)."""
    import inspect

    import monai.networks.nets

    from ..models.architectures import get

    parameters = inspect.signature(getattr(monai.networks.nets, monai_class).__init__).parameters
    for key, ours in get(architecture).default_args.items():
        theirs = parameters.get(key)
        if key not in args and theirs is not None and theirs.default is not inspect.Parameter.empty \
                and theirs.default != ours:
            args[key] = list(theirs.default) if isinstance(theirs.default, tuple) else theirs.default


def _labels(metadata: Dict[str, Any], classes: int) -> List[SegmentLabel]:
    outputs = (metadata.get("network_data_format") or {}).get("outputs") or {}
    channel_def = next((o.get("channel_def") for o in outputs.values() if isinstance(o, dict)
                        and o.get("channel_def")), {}) or {}
    labels = []
    for value in range(1, classes):
        name = str(channel_def.get(str(value)) or f"Segment_{value}")
        labels.append(SegmentLabel(value, name, SegmentLabel.default_for(value).color))
    return labels


def _state_dict(path: Path) -> Dict[str, Any]:
    content = load_checkpoint(path)
    if isinstance(content, dict) and isinstance(content.get("model"), dict):
        content = content["model"]  # MONAI's CheckpointSaver layout
    if not isinstance(content, dict):
        raise ModelError(f"{path.name} is not a state dict")
    return {re.sub(r"^(module\.|_orig_mod\.)", "", str(k)): v for k, v in content.items()}


def convert_monai_bundle(folder: Union[str, Path], destination: Union[str, Path], model_id: Optional[str] = None,
                         version: Optional[str] = None):
    """Write a SegmentAI package for the MONAI bundle in ``folder`` into the new folder ``destination``."""
    from ..models.package import write_model_package

    folder = Path(folder).expanduser()
    metadata = read_config(folder / "configs" / "metadata.json")
    config_path = next((folder / "configs" / n for n in ("inference.json", "inference.yaml", "inference.yml")
                        if (folder / "configs" / n).is_file()), None)
    if config_path is None:
        raise ModelError(f"{folder.name}: the bundle has no configs/inference.json")
    config = BundleConfig(read_config(config_path))
    notes: Notes = []
    weights = _weights_path(folder, config)
    if not weights.is_file():
        raise ModelError(f"{folder.name}: the bundle has no {weights.relative_to(folder).as_posix()} "
                         "(TorchScript-only bundles are not imported yet)")
    architecture, args, in_channels, classes = _network(config, notes)
    preprocessing = _preprocessing(config)
    inference = _inference(config, notes)
    _check_postprocessing(config, notes)
    labels = _labels(metadata, classes)
    inputs = (metadata.get("network_data_format") or {}).get("inputs") or {}
    image = next(iter(inputs.values()), {}) if inputs else {}
    modality = str(image.get("modality", "any")).upper() if isinstance(image, dict) else "any"
    modality = {"MRI": "MR"}.get(modality, modality)
    name = str(metadata.get("name") or folder.name)
    manifest = {
        "schema_version": 1,
        "id": model_id or _slug(f"monai-{name}"),
        "version": version or (str(metadata.get("version")) if re.match(r"^\d+\.\d+\.\d+$",
                                                                        str(metadata.get("version", ""))) else "1.0.0"),
        "name": name,
        "task": str(metadata.get("task") or "segmentation"),
        "modality": modality if modality in ("CT", "MR", "PT", "NM", "US") else "any",
        "dimensions": 3,
        "architecture": {"name": architecture, "args": args, "axis_order": "ijk"},  # MONAI arrays are (x, y, z)
        "input_channels": [f"image{c}" if in_channels > 1 else "image" for c in range(in_channels)],
        "labels": {str(label.value): {"name": label.name, "color": list(label.color)} for label in labels},
        "preprocessing": preprocessing,
        "inference": inference,
        "postprocessing": {},
        "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64},
        "license": {"weights": str(metadata.get("license") or metadata.get("copyright") or "see the bundle")},
        "training_data": str((metadata.get("data_source") or metadata.get("description") or name))[:500],
        "accuracy": [],
        "notes": " ".join([f"Imported from the MONAI bundle {folder.name}.", *notes]),
        "x-monai-bundle": {
            "source_format": "monai-bundle",
            "files": {f"configs/{p.name}": _sha256(p.read_bytes()) for p in (folder / "configs").iterdir()
                      if p.is_file()} | {weights.relative_to(folder).as_posix(): _sha256(weights.read_bytes())},
            "approximations": notes,
        },
    }
    package = write_model_package(destination, manifest, _state_dict(weights))
    kept = Path(package.folder) / "bundle"
    kept.mkdir()
    for path in (folder / "configs").iterdir():
        if path.is_file():
            (kept / path.name).write_bytes(path.read_bytes())
    return package
