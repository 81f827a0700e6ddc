"""The model manifest (``manifest.json``): reading, validating against the shipped schema, writing.

A model package is a folder holding ``manifest.json`` and one weights file. The manifest says
what the network segments (labels with colours and terminology), how its input is prepared
(orientation, spacing, normalisation), how inference runs (patch size, overlap, mirroring),
and where the checksummed weights are. ``Resources/Schemas/model-manifest.schema.json`` is the
contract; this module turns its validation errors into one readable line.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import ModelError
from ..geometry import ijk_axes_to_kji, ijk_to_kji
from ..io.staging import write_json_atomic  # noqa: F401  (also importable from here, as before)
from ..labels import SegmentLabel, Terminology
from ..resources import resources_dir
from . import architectures
from .extensions import INTERACTIVE_EXTENSION, NNUNET_EXTENSION, InteractiveSettings, NNUNetSettings
from .architectures import size_divisor

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_NAME",
    "ModelManifest",
    "load_manifest",
    "manifest_schema",
    "version_key",
]

MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "model-manifest.schema.json"

_schema_cache: Dict[str, Any] = {}


def manifest_schema() -> dict:
    """The shipped JSON schema of manifests (read once)."""
    path = resources_dir() / "Schemas" / SCHEMA_NAME
    key = str(path)
    if key not in _schema_cache:
        try:
            _schema_cache[key] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot read the manifest schema {path}: {error}") from error
    return _schema_cache[key]


def version_key(version: str) -> Tuple:
    """Sort key for semantic versions: 1.10.0 > 1.9.0, and 1.0.0-rc1 < 1.0.0."""
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?", version)
    if not match:
        return (-1, -1, -1, 0, ())
    major, minor, patch, pre = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, parts)


# ---------------------------------------------------------------------------------------------
# Validation errors as one line


def _path_text(parts: Sequence[Union[str, int]]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe_error(error: Any) -> str:
    """One readable clause for a jsonschema ValidationError (without the 'model x' prefix)."""
    path = _path_text(list(error.absolute_path))
    kind = error.validator
    value = error.validator_value
    where = f"'{path}'" if path else "the manifest"
    if kind in ("oneOf", "anyOf"):
        # Explain the branch whose type fits the value (e.g. the list form of training_data).
        from jsonschema.exceptions import best_match

        fitting = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        if fitting:
            return _describe_error(best_match(fitting))
        types = [b.get("type") for b in value if isinstance(b, dict) and b.get("type")]
        return f"{where} must be {' or '.join(_TYPE_WORDS.get(t, t) for t in types)} (got {_short(error.instance)})"
    if kind == "required":
        missing = [name for name in value if isinstance(error.instance, dict) and name not in error.instance]
        return f"missing field '{_join(path, missing[0] if missing else value[0])}'"
    if kind == "additionalProperties":
        known = set((error.schema or {}).get("properties", {}))
        patterns = list((error.schema or {}).get("patternProperties", {}))
        extra = sorted(
            key for key in error.instance if key not in known and not any(re.search(p, key) for p in patterns)
        )
        hint = " (extension fields must start with 'x-')" if not path else ""
        return f"unknown field '{_join(path, extra[0] if extra else '?')}'{hint}"
    if "propertyNames" in list(error.relative_schema_path):
        description = (error.schema or {}).get("description", "a valid key")
        return f"{where} has a key {_short(error.instance)} that is not {description}"
    if kind == "type":
        types = value if isinstance(value, list) else [value]
        return f"{where} must be {' or '.join(_TYPE_WORDS.get(t, t) for t in types)} (got {_short(error.instance)})"
    if kind == "enum":
        return f"{where} must be one of {', '.join(_short(v) for v in value)} (got {_short(error.instance)})"
    if kind == "const":
        return f"{where} must be {_short(value)} (got {_short(error.instance)})"
    if kind in ("pattern", "format"):
        description = (error.schema or {}).get("description", f"matching {value}")
        return f"{where} must be {description} (got {_short(error.instance)})"
    if kind in ("minItems", "maxItems"):
        schema = error.schema or {}
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is not None and low == high:
            count = f"exactly {low}"
        elif low is not None and high is not None:
            count = f"{low} to {high}"
        else:
            count = f"at least {low}" if kind == "minItems" else f"at most {high}"
        return f"{where} must have {count} items (got {len(error.instance)})"
    if kind == "minProperties":
        return f"{where} must not be empty"
    if kind == "minLength":
        return f"{where} must not be empty"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{where} must be {op} {value} (got {_short(error.instance)})"
    if kind == "uniqueItems":
        return f"{where} must not repeat items"
    message = str(error.message).splitlines()[0]
    return f"{where}: {message[:160]}"


def _validate_schema(data: Any, where: str) -> None:
    """Raise ModelError with one line for the most relevant schema violation."""
    import jsonschema
    from jsonschema.exceptions import best_match

    validator = jsonschema.Draft202012Validator(manifest_schema())
    error = best_match(validator.iter_errors(data))
    if error is not None:
        raise ModelError(f"{where}: {_describe_error(error)}")


# ---------------------------------------------------------------------------------------------
# The manifest object


@dataclass
class ModelManifest:
    """A validated manifest. Sections that are plain data stay dicts; labels become objects."""

    id: str
    version: str
    name: str
    task: str
    modality: str
    dimensions: int
    architecture: Dict[str, Any]
    input_channels: List[str]
    labels: List[SegmentLabel]
    preprocessing: Dict[str, Any]
    inference: Dict[str, Any]
    postprocessing: Dict[str, Any]
    weights: Dict[str, str]
    license: Dict[str, str]
    training_data: Union[str, List[Dict[str, Any]]]
    accuracy: List[Dict[str, Any]]
    parent: Optional[Dict[str, str]] = None
    created: Optional[str] = None
    notes: Optional[str] = None
    extensions: Dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1

    # --- derived, typed views ---------------------------------------------------------------

    @property
    def full_id(self) -> str:
        """``id@version``, the unique name of this package."""
        return f"{self.id}@{self.version}"

    @property
    def num_classes(self) -> int:
        """Network output channels: one per label plus background."""
        return len(self.labels) + 1

    @property
    def label_values(self) -> List[int]:
        return [label.value for label in self.labels]

    @property
    def architecture_name(self) -> str:
        return str(self.architecture["name"])

    @property
    def architecture_row(self) -> "architectures.Architecture":
        """This architecture's row of :data:`~.architectures.ARCHITECTURES` (builder, divisor, pipeline ...)."""
        return architectures.get(self.architecture_name)

    @property
    def architecture_args(self) -> Dict[str, Any]:
        return dict(self.architecture.get("args") or {})

    @property
    def axis_order(self) -> str:
        """Array order the network expects: ``"kji"`` (SegmentAI's, the default) or ``"ijk"`` (MONAI's)."""
        return str(self.architecture.get("axis_order", "kji"))

    @property
    def orientation(self) -> str:
        """Orientation code the model was trained in (e.g. ``"RAS"``), ITK/DICOM letter meaning."""
        return str(self.preprocessing["orientation"])

    @property
    def target_spacing(self) -> Tuple[float, float, float]:
        """Spacing (x, y, z) in mm the input is resampled to."""
        x, y, z = (float(v) for v in self.preprocessing["target_spacing"])
        return (x, y, z)

    @property
    def normalization(self) -> Dict[str, Any]:
        return dict(self.preprocessing["normalization"])

    @property
    def patch_size(self) -> Tuple[int, ...]:
        """Sliding-window size (x, y[, z]) in voxels; its length equals ``dimensions``."""
        return tuple(int(v) for v in self.inference["patch_size"])

    @property
    def patch_size_kji(self) -> Tuple[int, ...]:
        """:attr:`patch_size` in array order ``([k,] j, i)``."""
        return ijk_to_kji(self.patch_size)

    @property
    def target_spacing_kji(self) -> Tuple[float, float, float]:
        """:attr:`target_spacing` in array order ``(k, j, i)``."""
        return ijk_to_kji(self.target_spacing)

    @property
    def mirror_axes_kji(self) -> Tuple[int, ...]:
        """:attr:`mirror_axes` as array axes (``dimensions``-D array, k = 0)."""
        return ijk_axes_to_kji(self.mirror_axes, self.dimensions)

    @property
    def size_divisor(self) -> Tuple[int, ...]:
        """What every input size (x, y[, z]) must be a multiple of, from the architecture's rule."""
        return size_divisor(self.architecture, self.dimensions)

    @property
    def size_divisor_kji(self) -> Tuple[int, ...]:
        """:attr:`size_divisor` in array order ``([k,] j, i)``."""
        return ijk_to_kji(self.size_divisor)

    @property
    def overlap(self) -> float:
        return float(self.inference["overlap"])

    @property
    def mirror_axes(self) -> Tuple[int, ...]:
        """Axes (x=0, y=1, z=2) to mirror for test-time augmentation; empty for none."""
        return tuple(int(v) for v in self.inference.get("mirror_axes", []))

    @property
    def blend_mode(self) -> str:
        """How overlapping windows are averaged: ``gaussian`` (default) or ``constant`` (MONAI's modes)."""
        return str(self.inference.get("blend_mode", "gaussian"))

    @property
    def sigma_scale(self) -> float:
        """Gaussian blending's sigma as a fraction of the window size (MONAI's default 0.125)."""
        return float(self.inference.get("sigma_scale", 0.125))

    @property
    def crop_foreground(self) -> bool:
        return bool(self.inference.get("crop_foreground", False))

    @property
    def strategy(self) -> str:
        """``windows`` (default, MONAI-equal output) or ``whole_volume`` (one pass, opt-in)."""
        return str(self.inference.get("strategy", "windows"))

    @property
    def largest_component(self) -> bool:
        return bool(self.postprocessing.get("largest_component", False))

    @property
    def intensity_range(self) -> Dict[int, Tuple[float, float]]:
        """Per label value, the input intensities a kept component's median lies in (empty: no gate)."""
        ranges = self.postprocessing.get("intensity_range") or {}
        return {int(k): (float(v[0]), float(v[1])) for k, v in ranges.items()}

    @property
    def intensity_gate(self) -> Dict[int, Tuple[float, float]]:
        """Per label value, the HU fences of the voxel-wise gate on the model's grid (empty: none);
        see :mod:`segmentai_core.inference.intensity_gate`."""
        ranges = self.postprocessing.get("intensity_gate") or {}
        return {int(k): (float(v[0]), float(v[1])) for k, v in ranges.items()}

    @property
    def parent_guard(self) -> Optional[Tuple[str, float]]:
        """(parent ``id@version``, reach in mm) for a model fine-tuned on its parent's own label, whose
        foreground stays within that reach of the parent's; None: no guard (see
        :mod:`segmentai_core.inference.parent_guard`)."""
        guard = self.postprocessing.get("parent_guard")
        return (str(guard["model"]), float(guard["distance_mm"])) if guard else None

    @property
    def fill_holes(self) -> bool:
        return bool(self.postprocessing.get("fill_holes", False))

    @property
    def fill_slice_holes(self) -> bool:
        """Also fill background enclosed within a slice along any axis (a brain's ventricles)."""
        return bool(self.postprocessing.get("fill_slice_holes", False))

    @property
    def weights_file(self) -> str:
        return str(self.weights["file"])

    @property
    def weights_format(self) -> str:
        return str(self.weights["format"])

    @property
    def weights_sha256(self) -> str:
        return str(self.weights["sha256"])

    @property
    def interactive_settings(self) -> InteractiveSettings:
        """The ``x-interactive`` block with its defaults (all defaults when the block is absent)."""
        return InteractiveSettings.from_block(self.extensions.get(INTERACTIVE_EXTENSION))

    @property
    def nnunet_settings(self) -> Optional[NNUNetSettings]:
        """The ``x-nnunet`` block of an imported nnU-Net model; None when there is none."""
        block = self.extensions.get(NNUNET_EXTENSION)
        return NNUNetSettings.of(block) if isinstance(block, dict) else None

    def label(self, value: int) -> SegmentLabel:
        """The label with this value (KeyError if the model has none)."""
        for item in self.labels:
            if item.value == value:
                return item
        raise KeyError(value)

    # --- reading and writing -------------------------------------------------------------------

    @staticmethod
    def from_dict(data: Any, where: str = "manifest.json") -> "ModelManifest":
        """Validate ``data`` (schema, then cross-field rules) and build the manifest.

        ``where`` names the source in error messages (``model 'x' manifest.json``).
        """
        if isinstance(data, dict) and isinstance(data.get("id"), str) and where == "manifest.json":
            where = f"model '{data['id']}' manifest.json"
        _validate_schema(data, where)
        data = copy.deepcopy(data)
        labels = _parse_labels(data["labels"], where)
        manifest = ModelManifest(
            id=data["id"],
            version=data["version"],
            name=data["name"],
            task=data["task"],
            modality=data["modality"],
            dimensions=int(data["dimensions"]),
            architecture={"name": data["architecture"]["name"], "args": data["architecture"].get("args", {}),
                          **({"axis_order": data["architecture"]["axis_order"]}
                             if "axis_order" in data["architecture"] else {})},
            input_channels=list(data["input_channels"]),
            labels=labels,
            preprocessing=data["preprocessing"],
            inference=data["inference"],
            postprocessing=data["postprocessing"],
            weights=data["weights"],
            license=data["license"],
            training_data=data["training_data"],
            accuracy=data["accuracy"],
            parent=data.get("parent"),
            created=data.get("created"),
            notes=data.get("notes"),
            extensions={k: v for k, v in data.items() if k.startswith("x-")},
            schema_version=int(data["schema_version"]),
        )
        _check_consistency(manifest, where)
        return manifest

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form (what :meth:`save` writes); ``from_dict(to_dict())`` gives an equal manifest."""
        labels = {}
        for label in self.labels:
            entry: Dict[str, Any] = {"name": label.name, "color": [float(c) for c in label.color]}
            if label.terminology is not None:
                entry["terminology"] = label.terminology.to_dict()
            labels[str(label.value)] = entry
        data: Dict[str, Any] = {
            "schema_version": self.schema_version,
            "id": self.id,
            "version": self.version,
            "name": self.name,
            "task": self.task,
            "modality": self.modality,
            "dimensions": self.dimensions,
            "architecture": copy.deepcopy(self.architecture),
            "input_channels": list(self.input_channels),
            "labels": labels,
            "preprocessing": copy.deepcopy(self.preprocessing),
            "inference": copy.deepcopy(self.inference),
            "postprocessing": copy.deepcopy(self.postprocessing),
            "weights": dict(self.weights),
            "license": dict(self.license),
            "training_data": copy.deepcopy(self.training_data),
            "accuracy": copy.deepcopy(self.accuracy),
        }
        for key in ("parent", "created", "notes"):
            if getattr(self, key) is not None:
                data[key] = copy.deepcopy(getattr(self, key))
        data.update(copy.deepcopy(self.extensions))
        return data

    def save(self, path: Union[str, Path]) -> Path:
        """Validate and write the manifest as JSON atomically; ``path`` is a file or a model folder."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        data = self.to_dict()
        ModelManifest.from_dict(data, where=f"model '{self.id}' {path.name}")  # never write an invalid one
        write_json_atomic(path, data)
        return path


def _parse_labels(data: Dict[str, Any], where: str) -> List[SegmentLabel]:
    labels = []
    for key in sorted(data, key=int):
        entry = data[key]
        terminology = None
        if "terminology" in entry:
            try:
                terminology = Terminology.from_dict(entry["terminology"])
            except (ValueError, KeyError) as error:
                raise ModelError(f"{where}: 'labels.{key}.terminology': {error}") from error
        red, green, blue = (float(c) for c in entry["color"])
        labels.append(SegmentLabel(int(key), str(entry["name"]), (red, green, blue), terminology))
    names = [label.name for label in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelError(f"{where}: label name '{duplicates[0]}' is used twice")
    return labels


def _check_consistency(manifest: ModelManifest, where: str) -> None:
    """Rules across fields that a JSON schema cannot say clearly."""
    dims = manifest.dimensions
    if len(manifest.patch_size) != dims:
        raise ModelError(f"{where}: 'inference.patch_size' must have {dims} items for a {dims}D model")
    bad_axes = [a for a in manifest.mirror_axes if a >= dims]
    if bad_axes:
        raise ModelError(f"{where}: 'inference.mirror_axes' has axis {bad_axes[0]}, but the model is {dims}D")
    if manifest.architecture_name not in architectures.ARCHITECTURES:
        known = ", ".join(_short(name) for name in architectures.ARCHITECTURES)
        raise ModelError(
            f"{where}: 'architecture.name' must be one of {known} (got {_short(manifest.architecture_name)})")
    is_script = manifest.architecture_row.carries_code
    if is_script != (manifest.weights_format == "torchscript"):
        script = ", ".join(f"'{a.name}'" for a in architectures.ARCHITECTURES.values() if a.carries_code)
        raise ModelError(
            f"{where}: architecture {script} and weights format 'torchscript' go together "
            f"(got architecture '{manifest.architecture_name}', format '{manifest.weights_format}')"
        )
    if is_script and manifest.architecture_args:
        raise ModelError(f"{where}: 'architecture.args' must be empty for a TorchScript model")
    norm = manifest.normalization
    if norm["type"] == "ct_window" and not norm["window"][0] < norm["window"][1]:
        raise ModelError(f"{where}: 'preprocessing.normalization.window' must be [low, high] with low < high")
    if norm["type"] == "percentile" and not norm["lower"] < norm["upper"]:
        raise ModelError(f"{where}: 'preprocessing.normalization' needs lower < upper")
    divisor = manifest.size_divisor
    if any(size % d for size, d in zip(manifest.patch_size, divisor)):
        raise ModelError(
            f"{where}: 'inference.patch_size' {list(manifest.patch_size)} must be a multiple of "
            f"{list(divisor)} for this {manifest.architecture_name}"
        )


def load_manifest(folder: Union[str, Path]) -> ModelManifest:
    """Read and validate ``<folder>/manifest.json``; every problem is one ModelError line."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    if not path.is_file():
        raise ModelError(f"{folder} is not a model package: it has no {MANIFEST_NAME}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ModelError(f"model folder '{folder.name}' {MANIFEST_NAME}: not UTF-8 text") from error
    except ValueError as error:
        raise ModelError(f"model folder '{folder.name}' {MANIFEST_NAME}: not valid JSON ({error})") from error
    except RecursionError:
        raise ModelError(f"model folder '{folder.name}' {MANIFEST_NAME}: nested too deeply to be a manifest") from None
    except OSError as error:
        raise ModelError(f"cannot read {path}: {error.strerror or error}") from error
    if isinstance(data, dict) and isinstance(data.get("id"), str) and re.match(r"^[a-z0-9][a-z0-9._-]*$", data["id"]):
        where = f"model '{data['id']}' {MANIFEST_NAME}"
    else:
        where = f"model folder '{folder.name}' {MANIFEST_NAME}"
    return ModelManifest.from_dict(data, where=where)
