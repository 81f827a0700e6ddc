"""Import a trained nnU-Net v2 model folder as a SegmentAI model package (no ``nnunetv2`` needed).

Input: the folder nnU-Net writes for one trainer/plans/configuration (``3d_fullres``,
``3d_lowres`` or ``2d``; not a cascade stage), holding ``dataset.json``,
``plans.json`` and ``fold_*/checkpoint_final.pth`` (or ``checkpoint_best.pth``). Output: a
package whose manifest has architecture ``nnUNet`` (network class and arguments from the
plans), an ``x-nnunet`` block with everything the inference path needs (axis order, spacing,
normalisation, resampling orders, patch, mirroring, regions) and the SHA-256 of every source
file; the weights of all folds go into one checksummed safetensors file, and ``dataset.json``
and ``plans.json`` are kept as they were under ``nnunet/``. A ``crossval_results_folds_*/
postprocessing.pkl`` (nnU-Net's chosen postprocessing) is read as data by
:mod:`.nnunet_postprocessing` and its steps stored in the manifest as JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import ModelError
from ..geometry import kji_to_ijk
from ..labels import SegmentLabel
from .checkpoint import load_checkpoint
from .nnunet_postprocessing import find_postprocessing_file, read_postprocessing

__all__ = ["is_nnunet_folder", "convert_nnunet"]

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")
SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO")  # both give the array in stored (k, j, i) order


def is_nnunet_folder(folder: Path) -> bool:
    """True for a trained nnU-Net v2 model folder (dataset.json, plans.json and some fold_*)."""
    return (folder / "dataset.json").is_file() and (folder / "plans.json").is_file() and any(folder.glob("fold_*"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path.name}: cannot read it as JSON ({error})") from error
    except RecursionError:
        raise ModelError(f"{path.name}: nested too deeply to be an nnU-Net file") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:80] or "nnunet-model"


def _find_checkpoints(folder: Path, folds: Optional[Sequence[str]],
                      checkpoint: Optional[str]) -> List[Tuple[str, Path]]:
    names = [checkpoint] if checkpoint else list(CHECKPOINT_NAMES)
    found = []
    fold_dirs = sorted(p for p in folder.glob("fold_*") if p.is_dir())
    if folds is not None:
        wanted = {f"fold_{f}" for f in folds}
        missing = sorted(wanted - {p.name for p in fold_dirs})
        if missing:
            raise ModelError(f"{folder.name}: no folder {missing[0]}")
        fold_dirs = [p for p in fold_dirs if p.name in wanted]
    for fold_dir in fold_dirs:
        path = next((fold_dir / n for n in names if (fold_dir / n).is_file()), None)
        if path is not None:
            found.append((fold_dir.name, path))
    if not found:
        raise ModelError(f"{folder.name}: no fold holds {' or '.join(names)}")
    return found


def _mirror_axes(content: Dict[str, Any]) -> List[int]:
    """The axes nnU-Net mirrors at inference for this checkpoint: none where it stores None or nothing.

    ``*_NoMirroring`` trainers (all of TotalSegmentator's) save ``inference_allowed_mirroring_axes``
    as None, and ``nnUNetPredictor`` then predicts each window once; mirroring every axis instead
    would differ from it and take 8 forward passes per window.
    """
    axes = content.get("inference_allowed_mirroring_axes")
    return [] if axes is None else [int(a) for a in axes]


def _strip_prefixes(state: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key, value in state.items():
        for prefix in ("_orig_mod.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _label_setup(dataset: Dict[str, Any]) -> Tuple[List[SegmentLabel], int, Optional[List[int]]]:
    """Labels for the manifest, number of network outputs, and regions_class_order (None if plain)."""
    raw = {str(k): v for k, v in dataset["labels"].items() if str(k) != "ignore"}
    regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in raw.values())
    if not regions:
        values = {name: int(v[0] if isinstance(v, (list, tuple)) else v) for name, v in raw.items()}
        labels = [SegmentLabel.default_for(v) for v in sorted(values.values()) if v > 0]
        names = {v: n for n, v in values.items()}
        labels = [SegmentLabel(lab.value, names[lab.value], lab.color) for lab in labels]
        return labels, len(values), None
    order = [int(v) for v in dataset.get("regions_class_order") or []]
    foreground = [(name, v) for name, v in raw.items() if (v if isinstance(v, (list, tuple)) else [v]) != [0]]
    if len(order) != len(foreground):
        raise ModelError("dataset.json: region-based labels need 'regions_class_order' with one value per region")
    labels = [SegmentLabel(value, name, SegmentLabel.default_for(value).color)
              for (name, _), value in zip(foreground, order)]
    return sorted(labels, key=lambda lab: lab.value), len(foreground), order


def _normalization(config: Dict[str, Any], plans: Dict[str, Any]) -> List[Dict[str, Any]]:
    specs = []
    properties = plans.get("foreground_intensity_properties_per_channel", {})
    for c, scheme in enumerate(config["normalization_schemes"]):
        spec: Dict[str, Any] = {"scheme": scheme, "use_mask": bool(config["use_mask_for_norm"][c])}
        if scheme == "CTNormalization":
            stats = properties.get(str(c))
            if not stats:
                raise ModelError(f"plans.json: CTNormalization of channel {c} needs its intensity properties")
            spec.update(mean=float(stats["mean"]), std=float(stats["std"]),
                        lower=float(stats["percentile_00_5"]), upper=float(stats["percentile_99_5"]))
        elif scheme not in ("ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization"):
            raise ModelError(f"plans.json: normalisation scheme '{scheme}' is not supported")
        specs.append(spec)
    return specs


def _resampling(config: Dict[str, Any], key: str, default_order: int) -> Dict[str, Any]:
    name = str(config.get(f"resampling_fn_{key}", "resample_data_or_seg_to_shape"))
    if not name.endswith("resample_data_or_seg_to_shape"):
        raise ModelError(f"plans.json: resampling function '{name}' is not supported")
    kwargs = config.get(f"resampling_fn_{key}_kwargs") or {}
    return {"order": int(kwargs.get("order", default_order)), "order_z": int(kwargs.get("order_z", 0)),
            "force_separate_z": kwargs.get("force_separate_z")}


def _configuration(plans: Dict[str, Any], name: str, _seen: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """The configuration's settings with ``inherits_from`` resolved (a loop is refused)."""
    configurations = plans.get("configurations", {})
    if not isinstance(configurations, dict) or name not in configurations:
        raise ModelError(f"plans.json has no configuration '{name}'")
    if name in _seen:
        raise ModelError(f"plans.json: configurations inherit in a loop ({' -> '.join(_seen + (name,))})")
    if not isinstance(configurations[name], dict):
        raise ModelError(f"plans.json: configuration '{name}' is not an object")
    config = dict(configurations[name])
    parent = config.pop("inherits_from", None)
    if parent:
        merged = _configuration(plans, str(parent), _seen + (name,))
        merged.update(config)
        config = merged
    return config


def _manifest_geometry(plans: Dict[str, Any], config: Dict[str, Any],
                       backward: Sequence[int]) -> Tuple[List[float], List[int]]:
    """The manifest's informational target spacing (x, y, z) and patch (x, y[, z]).

    Model axis order → array order (k, j, i) → reversed. A 2d configuration has no spacing or
    patch along its first (slice) axis: the dataset's median slice spacing stands in for the
    former (nnU-Net keeps each input's own), and the latter is dropped from the patch.
    """
    spacing = [float(s) for s in config["spacing"]]
    patch = [int(p) for p in config["patch_size"]]
    if len(patch) == 2:
        median = plans.get("original_median_spacing_after_transp") or [spacing[0]]
        spacing, patch = [float(median[0])] + spacing, [0] + patch
    spacing_xyz = list(kji_to_ijk([spacing[a] for a in backward]))
    patch_xyz = list(kji_to_ijk([patch[a] for a in backward]))
    return spacing_xyz, [p for p in patch_xyz if p > 0]


def convert_nnunet(
    folder: Union[str, Path],
    destination: Union[str, Path],
    model_id: Optional[str] = None,
    version: str = "1.0.0",
    folds: Optional[Sequence[str]] = None,
    checkpoint: Optional[str] = None,
    postprocessing: bool = True,
    step_size: float = 0.5,
    resample_mm: Optional[float] = None,
):
    """Write a SegmentAI package for the nnU-Net model in ``folder`` into the new folder ``destination``.

    See :func:`_convert_nnunet`. A ``plans.json`` or ``dataset.json`` that lacks a key or holds a
    value of the wrong kind (a label that is not an integer...) is one ModelError too.
    """
    try:
        return _convert_nnunet(folder, destination, model_id, version, folds, checkpoint, postprocessing, step_size,
                               resample_mm)
    except KeyError as error:
        raise ModelError(f"{Path(folder).name}: plans.json or dataset.json lacks the entry "
                         f"{error.args[0]!r} that nnU-Net v2 writes") from None
    except (TypeError, ValueError, IndexError, AttributeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(f"{Path(folder).name}: plans.json or dataset.json holds a value SegmentAI cannot use "
                         f"({first})") from None


def _convert_nnunet(
    folder: Union[str, Path],
    destination: Union[str, Path],
    model_id: Optional[str] = None,
    version: str = "1.0.0",
    folds: Optional[Sequence[str]] = None,
    checkpoint: Optional[str] = None,
    postprocessing: bool = True,
    step_size: float = 0.5,
    resample_mm: Optional[float] = None,
):
    """Write a SegmentAI package for the nnU-Net model in ``folder`` into the new folder ``destination``.

    Returns the :class:`~segmentai_core.models.package.ModelPackage`. Checkpoints are read with
    :func:`~.checkpoint.load_checkpoint` and ``postprocessing.pkl`` with a restricted unpickler
    (no pickled code runs); ``postprocessing=False`` ignores the latter. ``step_size`` is the sliding
    windows' step as a fraction of the patch: nnU-Net's default 0.5, or what the model's own tool uses
    (TotalSegmentator predicts its ``total`` and ``total_mr`` tasks at 0.8; the catalog says so).
    ``resample_mm``: the model runs inside TotalSegmentator's round trip at that spacing (see
    :mod:`~segmentai_core.inference.resample_first`), as that tool runs it. Every problem is one
    ModelError, raised before anything is written.
    """
    from ..models.package import write_model_package

    if not 0.0 < float(step_size) <= 1.0:
        raise ModelError(f"step size {step_size} is not in (0, 1] (a fraction of the patch)")
    if resample_mm is not None and not float(resample_mm) > 0.0:
        raise ModelError(f"resampling spacing {resample_mm} mm is not positive")

    folder = Path(folder).expanduser()
    if not is_nnunet_folder(folder):
        raise ModelError(f"{folder} is not an nnU-Net v2 model folder (dataset.json, plans.json, fold_*)")
    dataset_bytes, plans_bytes = (folder / "dataset.json").read_bytes(), (folder / "plans.json").read_bytes()
    dataset, plans = _read_json(folder / "dataset.json"), _read_json(folder / "plans.json")
    files = {"dataset.json": _sha256(dataset_bytes), "plans.json": _sha256(plans_bytes)}

    state: Dict[str, Any] = {}
    configuration_name, mirror_axes, trainer = None, None, None
    fold_names = []
    for fold_name, path in _find_checkpoints(folder, folds, checkpoint):
        data = path.read_bytes()
        files[f"{fold_name}/{path.name}"] = _sha256(data)
        content = load_checkpoint(path, data)
        if not isinstance(content, dict) or not isinstance(content.get("network_weights"), dict):
            raise ModelError(f"{fold_name}/{path.name} is not an nnU-Net checkpoint (no network_weights)")
        init_args = content.get("init_args") or {}
        configuration_name = configuration_name or init_args.get("configuration")
        trainer = trainer or content.get("trainer_name")
        if not fold_names:  # nnUNetPredictor takes the mirror axes from the first fold's checkpoint only
            mirror_axes = _mirror_axes(content)
        for key, value in _strip_prefixes(content["network_weights"]).items():
            state[f"folds.{fold_name}.{key}"] = value
        fold_names.append(fold_name)
    if not configuration_name:
        raise ModelError(f"{folder.name}: the checkpoints do not name their nnU-Net configuration")
    if "cascade" in str(configuration_name) or _configuration(plans, configuration_name).get("previous_stage"):
        raise ModelError(f"{folder.name}: cascade configuration '{configuration_name}' is not supported (its "
                         "input includes the previous stage's segmentation); import the 3d_lowres or 3d_fullres "
                         "model instead")
    config = _configuration(plans, configuration_name)
    dims = len(config["patch_size"])
    if dims not in (2, 3) or len(config["spacing"]) != dims:
        raise ModelError(f"{folder.name}: configuration '{configuration_name}' has a {dims}-item patch size and "
                         f"{len(config['spacing'])}-item spacing; nnU-Net 2d or 3d configurations are expected")
    reader = str(plans.get("image_reader_writer", "SimpleITKIO"))
    if reader not in SUPPORTED_READERS:
        raise ModelError(f"{folder.name}: image reader '{reader}' is not supported (its axis order differs)")

    steps: List[Dict[str, Any]] = []
    postprocessing_file = find_postprocessing_file(folder, fold_names) if postprocessing else None
    if postprocessing_file is not None:
        data = postprocessing_file.read_bytes()
        files[postprocessing_file.relative_to(folder).as_posix()] = _sha256(data)
        steps = read_postprocessing(postprocessing_file, data)

    labels, num_heads, regions = _label_setup(dataset)
    channels = [str(v) for _, v in sorted(dataset["channel_names"].items(), key=lambda kv: int(kv[0]))]
    architecture = config["architecture"]
    conv_op = str(architecture.get("arch_kwargs", {}).get("conv_op", ""))
    if not conv_op.endswith(f"Conv{dims}d"):
        raise ModelError(f"{folder.name}: configuration '{configuration_name}' is {dims}D but its network uses "
                         f"'{conv_op}'")
    forward = [int(a) for a in plans["transpose_forward"]]
    backward = [int(a) for a in plans["transpose_backward"]]
    spacing_model = [float(s) for s in config["spacing"]]
    spacing_xyz, patch_xyz = _manifest_geometry(plans, config, backward)
    name = str(dataset.get("name") or plans.get("dataset_name") or folder.parent.name)
    model_id = model_id or _slug(f"nnunet-{plans.get('dataset_name', name)}-{configuration_name}")
    modality = "CT" if any(c.upper() == "CT" for c in channels) else ("MR" if any("MR" in c.upper() or c.upper()
                                                                               in ("T1", "T2", "FLAIR") for c in
                                                                               channels) else "any")
    manifest = {
        "schema_version": 1,
        "id": model_id,
        "version": version,
        "name": f"{name} (nnU-Net {configuration_name})",
        "task": "segmentation of " + ", ".join(label.name for label in labels),
        "modality": modality,
        "dimensions": dims,
        "architecture": {"name": "nnUNet", "args": {
            "network_class": architecture["network_class_name"],
            "network_kwargs": architecture["arch_kwargs"],
            "kwargs_requiring_import": list(architecture.get("_kw_requires_import", [])),
            "in_channels": len(channels),
            "out_channels": num_heads,
            "folds": fold_names,
        }},
        "input_channels": channels,
        "labels": {str(label.value): {"name": label.name, "color": list(label.color)} for label in labels},
        # Informational: nnU-Net models run in the stored axis order (see x-nnunet), not reoriented.
        "preprocessing": {"orientation": "LPS", "target_spacing": spacing_xyz,
                          "normalization": {"type": "none"}},
        "inference": {"patch_size": patch_xyz, "overlap": round(1.0 - float(step_size), 6)},
        "postprocessing": {},
        "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64},
        "license": {"weights": str(dataset.get("license") or "as stated by the model's authors (imported)")},
        "training_data": str(dataset.get("reference") or dataset.get("description") or name),
        "accuracy": [],
        "notes": f"Imported from the nnU-Net v2 folder {folder.name} (trainer {trainer}, folds "
                 f"{', '.join(f.replace('fold_', '') for f in fold_names)}).",
        "x-nnunet": {
            "source_format": "nnunet-v2",
            "configuration": configuration_name,
            "trainer": trainer,
            "image_reader": reader,
            "transpose_forward": forward,
            "transpose_backward": backward,
            "spacing": spacing_model,
            "patch_size": [int(p) for p in config["patch_size"]],
            "normalization": _normalization(config, plans),
            "resampling_data": _resampling(config, "data", 3),
            "resampling_probabilities": _resampling(config, "probabilities", 1),
            "mirror_axes": mirror_axes,
            "step_size": float(step_size),
            "num_heads": num_heads,
            "in_channels": len(channels),
            "regions_class_order": regions,
            "postprocessing": steps,
            "files": files,
        },
    }
    if resample_mm is not None:
        manifest["x-nnunet"]["resample_mm"] = float(resample_mm)
    package = write_model_package(destination, manifest, state)
    kept = Path(package.folder) / "nnunet"
    kept.mkdir()
    (kept / "dataset.json").write_bytes(dataset_bytes)
    (kept / "plans.json").write_bytes(plans_bytes)
    if (folder / "dataset_fingerprint.json").is_file():
        shutil.copy2(folder / "dataset_fingerprint.json", kept / "dataset_fingerprint.json")
    return package
