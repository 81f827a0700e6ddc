"""Import a MONAI bundle (``configs/metadata.json``, ``configs/inference.json``, ``models/model.pt``).

A bundle's config is a small program: ``$`` strings are Python expressions and ``_target_``
names any class. SegmentAI never evaluates it. The importer reads it as plain data and maps
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

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import ModelError
from ..labels import SegmentLabel
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


def _read_config(path: Path) -> Dict[str, Any]:
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(path.read_text(encoding="utf-8"))
        return json.loads(path.read_text(encoding="utf-8"))
    except ImportError as error:
        raise ModelError(f"{path.name}: reading YAML bundle configs needs PyYAML") from error
    except (OSError, ValueError) as error:
        raise ModelError(f"{path.name}: cannot read it ({str(error).splitlines()[0]})") from error
    except RecursionError:
        raise ModelError(f"{path.name}: nested too deeply to be a bundle config") from None
    except Exception as error:  # yaml.YAMLError: a Python tag (!!python/object...) or broken YAML
        if type(error).__module__.split(".")[0] != "yaml":
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path.name}: not plain YAML data (tags such as !!python/... are refused; {first})") from None


def _target(item: Any) -> str:
    return str(item.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(item, dict) else ""


def _literal(value: Any, where: str) -> Any:
    """``value`` if it is plain data; references (``@``) and expressions (``$``) are refused."""
    if isinstance(value, str) and value[:1] in ("@", "$", "%"):
        raise ModelError(f"inference config: {where} = {value!r} is an expression; SegmentAI imports literal values")
    if isinstance(value, list):
        return [_literal(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _resolve(config: Dict[str, Any], value: Any) -> Any:
    """Follow a plain ``@id`` reference (``@a#b`` paths too) inside the config, nothing else."""
    seen = 0
    while isinstance(value, str) and value.startswith("@") and seen < 10:
        node: Any = config
        for part in value[1:].split("#"):
            node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
        value, seen = node, seen + 1
    return value


def _transforms(config: Dict[str, Any]) -> List[Dict[str, Any]]:
    pre = _resolve(config, config.get("preprocessing"))
    if _target(pre) == "Compose":
        pre = pre.get("transforms")
    pre = _resolve(config, pre)
    if not isinstance(pre, list):
        raise ModelError("inference config: 'preprocessing' must be a Compose of transforms")
    return [_resolve(config, t) for t in pre]


def _preprocessing(config: Dict[str, Any]) -> Dict[str, Any]:
    orientation, spacing, normalization = None, None, {"type": "none"}
    for item in _transforms(config):
        name = _target(item)
        if item.get("_disabled_") is True or name in _IGNORED_TRANSFORMS:
            continue
        args = {k: _literal(v, f"{name}.{k}") for k, v in item.items() if k not in _META_KEYS and k != "keys"}
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
            normalization = {"type": "zscore", "nonzero": bool(args.get("nonzero", False))}
        else:
            raise ModelError(f"inference config: transform {name or item!r} has no SegmentAI equivalent")
    if orientation is None or spacing is None:
        raise ModelError("inference config: the preprocessing needs Orientationd and Spacingd to be imported")
    return {"orientation": orientation, "target_spacing": spacing, "normalization": normalization}


def _one_number(value: Any, where: str) -> float:
    """A number, or a per-axis sequence whose items are all equal (the manifest holds one value)."""
    value = _literal(value, where)
    if isinstance(value, (list, tuple)):
        if not value or any(float(v) != float(value[0]) for v in value):
            raise ModelError(f"inference config: {where} = {value!r} differs per axis; SegmentAI imports one value")
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise ModelError(f"inference config: {where} = {value!r} is not a number") from error


def _inference(config: Dict[str, Any]) -> Dict[str, Any]:
    """The SlidingWindowInferer's window, overlap and blending, with MONAI's own defaults when absent."""
    inferer = _resolve(config, config.get("inferer"))
    if _target(inferer) != "SlidingWindowInferer":
        raise ModelError(f"inference config: inferer {_target(inferer) or inferer!r} is not imported "
                         "(SlidingWindowInferer is)")
    roi = _literal(inferer.get("roi_size"), "inferer.roi_size")
    # MONAI's defaults: constant blending, overlap 0.25, sigma_scale 0.125 (only used by gaussian).
    mode = str(_literal(inferer.get("mode", "constant"), "inferer.mode")).lower()
    if mode not in ("constant", "gaussian"):
        raise ModelError(f"inference config: inferer.mode = {mode!r} is not imported (constant and gaussian are)")
    padding = str(_literal(inferer.get("padding_mode", "constant"), "inferer.padding_mode")).lower()
    if padding != "constant" or _one_number(inferer.get("cval", 0.0), "inferer.cval") != 0.0:
        raise ModelError("inference config: the inferer is imported only with zero padding (padding_mode "
                         "constant, cval 0)")
    inference: Dict[str, Any] = {
        "patch_size": [int(v) for v in roi],
        "overlap": _one_number(inferer.get("overlap", 0.25), "inferer.overlap"),
        "crop_foreground": False,
        "blend_mode": mode,
    }
    if mode == "gaussian":
        inference["sigma_scale"] = _one_number(inferer.get("sigma_scale", 0.125), "inferer.sigma_scale")
    return inference


def _check_postprocessing(config: Dict[str, Any]) -> None:
    post = _resolve(config, config.get("postprocessing"))
    items = post.get("transforms", []) if _target(post) == "Compose" else post or []
    names = [_target(_resolve(config, t)) for t in _resolve(config, items)]
    for item in (_resolve(config, t) for t in _resolve(config, items)):
        if _target(item) == "Activationsd" and not item.get("softmax", False):
            raise ModelError("inference config: only soft-max outputs are imported (Activationsd softmax=true)")
    if "AsDiscreted" in names or "Activationsd" in names:
        return
    raise ModelError("inference config: the postprocessing must be a soft-max/arg-max (Activationsd, AsDiscreted)")


def _monai_networks() -> Dict[str, str]:
    """MONAI class name (a bundle's ``network_def``) → SegmentAI architecture name, from the table."""
    from ..models.architectures import ARCHITECTURES

    return {row.monai_class: row.name for row in ARCHITECTURES.values() if row.monai_class}


def _network(config: Dict[str, Any]) -> Tuple[str, Dict[str, Any], int, int]:
    network = _resolve(config, config.get("network_def"))
    name = _target(network)
    networks = _monai_networks()
    if name not in networks:
        raise ModelError(f"inference config: network {name or network!r} is not imported "
                         f"(known: {', '.join(networks)})")
    args = {k: _literal(v, f"network_def.{k}") for k, v in network.items() if k not in _META_KEYS}
    architecture = networks[name]
    _fill_monai_defaults(name, architecture, args)
    dims = int(args.pop("spatial_dims", 3))
    if dims != 3:
        raise ModelError("inference config: only 3D bundles are imported")
    return architecture, args, int(args.pop("in_channels")), int(args.pop("out_channels"))


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
    metadata = _read_config(folder / "configs" / "metadata.json")
    config_path = next((folder / "configs" / n for n in ("inference.json", "inference.yaml", "inference.yml")
                        if (folder / "configs" / n).is_file()), None)
    if config_path is None:
        raise ModelError(f"{folder.name}: the bundle has no configs/inference.json")
    config = _read_config(config_path)
    weights = folder / "models" / "model.pt"
    if not weights.is_file():
        raise ModelError(f"{folder.name}: the bundle has no models/model.pt (TorchScript-only bundles are not "
                         "imported yet)")
    architecture, args, in_channels, classes = _network(config)
    preprocessing = _preprocessing(config)
    inference = _inference(config)
    _check_postprocessing(config)
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
        "notes": f"Imported from the MONAI bundle {folder.name}.",
        "x-monai-bundle": {
            "source_format": "monai-bundle",
            "files": {f"configs/{p.name}": _sha256(p.read_bytes()) for p in (folder / "configs").iterdir()
                      if p.is_file()} | {"models/model.pt": _sha256(weights.read_bytes())},
        },
    }
    package = write_model_package(destination, manifest, _state_dict(weights))
    kept = Path(package.folder) / "bundle"
    kept.mkdir()
    for path in (folder / "configs").iterdir():
        if path.is_file():
            (kept / path.name).write_bytes(path.read_bytes())
    return package
