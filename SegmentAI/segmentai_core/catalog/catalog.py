"""The catalog of public models (``Resources/Catalog/catalog.json``): loaded, validated, typed.

Each entry names a model that ``segmentai models install ID`` can download: its task, modality,
classes, the archive(s) to fetch (one per *part*: TotalSegmentator's ``total`` is five networks),
their size and hashes where the provider publishes them, the licence of the weights, the importer
that converts the unpacked folder and the citation. A part installs as an ordinary model package:
a single-part model under the catalog id, the parts of a multi-part model as ``<id>.<part>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import ModelError
from ..resources import resources_dir

__all__ = ["CATALOG_ENV", "CATALOG_NAME", "SCHEMA_NAME", "Catalog", "CatalogEntry", "CatalogPart", "catalog_path",
           "catalog_schema", "known_architectures", "load_catalog"]

CATALOG_NAME = "catalog.json"
SCHEMA_NAME = "model-catalog.schema.json"

CATALOG_ENV = "SEGMENTAI_CATALOG"
"""Environment variable naming another catalog file (an institution's mirror, tests)."""


def catalog_path() -> Path:
    """``$SEGMENTAI_CATALOG`` if set, else ``Resources/Catalog/catalog.json``."""
    override = os.environ.get(CATALOG_ENV)
    if override:
        return Path(override).expanduser()
    return resources_dir() / "Catalog" / CATALOG_NAME


def catalog_schema() -> dict:
    path = resources_dir() / "Schemas" / SCHEMA_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read the catalog schema {path}: {error}") from None


def known_architectures(importer: str) -> Tuple[str, ...]:
    """The architecture names this SegmentAI can build (for bundles: those a ``network_def`` may name)."""
    try:
        from ..models.architectures import ARCHITECTURES  # the architecture table, one row per name
    except ImportError:  # an older tree: the names only
        from ..models.networks import ARCHITECTURES
    names = set(ARCHITECTURES)
    if importer == "monai_bundle":
        rows = ARCHITECTURES.values() if isinstance(ARCHITECTURES, dict) else ()
        mapped = {row.name for row in rows if getattr(row, "monai_class", None)}
        if not mapped:
            from ..importers import monai_bundle

            mapped = set(getattr(monai_bundle, "_NETWORKS", {}).values())
        names &= mapped
    return tuple(sorted(names))


@dataclass(frozen=True)
class CatalogPart:
    """One downloadable archive: a whole model, or one network of a multi-part model."""

    name: str
    url: str
    size_bytes: Optional[int]
    sha256: Optional[str]
    sha1: Optional[str] = None
    task_id: Optional[int] = None
    folder: Optional[str] = None
    classes: Optional[Dict[int, str]] = None

    @property
    def file_name(self) -> str:
        """The archive's file name (the URL's last component)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or f"{self.name}.zip"


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    title: str
    provider: str
    version: str
    task: str
    modality: str
    importer: str
    architecture: str
    class_count: int
    class_names: Optional[Dict[int, str]]
    parts: Tuple[CatalogPart, ...]
    license: Dict[str, Any]
    citation: str
    homepage: str
    notes: str = ""
    spacing_mm: Optional[Tuple[float, float, float]] = None
    input_channels: Tuple[str, ...] = ()
    multi_label: bool = False
    segments: Optional[Dict[int, Dict[str, Any]]] = None
    step_size: Optional[float] = None
    """Sliding-window step the provider's tool uses (None: the importer's default), see the schema."""
    resample_mm: Optional[float] = None
    """Spacing the provider's tool resamples the scan to before nnU-Net (TotalSegmentator), see the schema."""

    def style_of(self, class_name: str) -> Optional[Dict[str, Any]]:
        """The provider's colour and terminology of the class named ``class_name`` (None if not given)."""
        if not self.segments or not self.class_names:
            return None
        value = next((v for v, n in self.class_names.items() if n == class_name), None)
        return self.segments.get(value) if value is not None else None

    @property
    def multi_part(self) -> bool:
        return len(self.parts) > 1

    def package_id(self, part: CatalogPart) -> str:
        """The registry id a part installs under: the catalog id, or ``<id>.<part>`` for multi-part models."""
        return f"{self.id}.{part.name}" if self.multi_part else self.id

    @property
    def package_ids(self) -> List[str]:
        return [self.package_id(p) for p in self.parts]

    @property
    def size_bytes(self) -> Optional[int]:
        """Total download size, or None when any part's size is unknown."""
        sizes = [p.size_bytes for p in self.parts]
        return None if any(s is None for s in sizes) else sum(sizes)

    @property
    def license_text(self) -> str:
        commercial = self.license.get("commercial_use")
        suffix = {True: "", False: ", non-commercial only", None: ""}[commercial]
        return f"{self.license['weights']}{suffix}"

    def architecture_problem(self) -> Optional[str]:
        """A one-line reason why this SegmentAI cannot run the model, or None."""
        if self.multi_label:
            return (f"model '{self.id}' has independent (sigmoid) output channels, which SegmentAI cannot import "
                    "yet (it imports soft-max label maps); nothing was downloaded")
        known = known_architectures(self.importer)
        if self.architecture in known:
            return None
        return (f"model '{self.id}' needs the {self.architecture} architecture, which this SegmentAI cannot "
                f"{'import from a MONAI bundle' if self.importer == 'monai_bundle' else 'build'} yet "
                f"(known: {', '.join(known)}); nothing was downloaded")


def _classes(data: Optional[Dict[str, str]]) -> Optional[Dict[int, str]]:
    return None if data is None else {int(k): str(v) for k, v in sorted(data.items(), key=lambda kv: int(kv[0]))}


def _entry(data: Dict[str, Any]) -> CatalogEntry:
    parts = tuple(CatalogPart(name=p["name"], url=p["url"], size_bytes=p["size_bytes"], sha256=p["sha256"],
                              sha1=p.get("sha1"), task_id=p.get("task_id"), folder=p.get("folder"),
                              classes=_classes(p.get("classes"))) for p in data["parts"])
    spacing = data.get("spacing_mm")
    return CatalogEntry(
        id=data["id"], title=data["title"], provider=data["provider"], version=data["version"], task=data["task"],
        modality=data["modality"], importer=data["importer"], architecture=data["architecture"],
        class_count=int(data["classes"]["count"]), class_names=_classes(data["classes"].get("names")),
        parts=parts, license=dict(data["license"]), citation=data["citation"], homepage=data["homepage"],
        notes=data.get("notes", ""), spacing_mm=tuple(spacing) if spacing else None,
        input_channels=tuple(data.get("input_channels", ())),
        multi_label=bool(data["classes"].get("multi_label", False)),
        segments={int(k): dict(v) for k, v in data["classes"]["segments"].items()}
        if data["classes"].get("segments") else None,
        step_size=float(data["step_size"]) if data.get("step_size") is not None else None,
        resample_mm=float(data["resample_mm"]) if data.get("resample_mm") is not None else None)


def _check(data: Any, where: str) -> None:
    import jsonschema
    from jsonschema.exceptions import best_match

    error = best_match(jsonschema.Draft202012Validator(catalog_schema()).iter_errors(data))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "the catalog"
        raise ModelError(f"{where}: '{path}': {str(error.message).splitlines()[0][:160]}")
    ids = [m["id"] for m in data["models"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ModelError(f"{where}: model id '{duplicates[0]}' appears twice")
    for model in data["models"]:
        names = [p["name"] for p in model["parts"]]
        if len(set(names)) != len(names):
            raise ModelError(f"{where}: model '{model['id']}' has two parts of the same name")
        names_map = model["classes"].get("names")
        if names_map is not None and len(names_map) != model["classes"]["count"]:
            raise ModelError(f"{where}: model '{model['id']}' names {len(names_map)} classes but counts "
                             f"{model['classes']['count']}")


class Catalog:
    """The validated catalog; ``get(id)`` raises a one-line ModelError for an unknown id."""

    def __init__(self, entries: List[CatalogEntry], path: Optional[Path] = None) -> None:
        self.entries = entries
        self.path = path

    def ids(self) -> List[str]:
        return [e.id for e in self.entries]

    def get(self, model_id: str) -> CatalogEntry:
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        lowered = [e for e in self.entries if e.id == model_id.lower()]
        if lowered:
            return lowered[0]
        raise ModelError(f"'{model_id}' is not in the model catalog (available: {', '.join(self.ids())}; "
                         "see 'segmentai models available')")

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def load_catalog(path: Optional[Union[str, Path]] = None) -> Catalog:
    """Read and validate the catalog (the shipped one unless ``path`` is given)."""
    path = Path(path) if path is not None else catalog_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelError(f"cannot read the model catalog {path} ({error.strerror or error})") from None
    except ValueError as error:
        raise ModelError(f"{path.name}: not valid JSON ({error})") from None
    _check(data, path.name)
    return Catalog([_entry(m) for m in data["models"]], path)
