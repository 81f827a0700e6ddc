"""A catalog model of several networks (TotalSegmentator's ``total``: five) run as one model.

Its parts are installed as ordinary packages (``<id>.<part>``, see :mod:`.install`). Segmenting
runs them in turn on the same input (progress per part; Cancel between and inside parts) and
merges their label maps into one, numbered and named as the catalog's class map: each part's
label values are mapped through the catalog's class map of that part (or, where the catalog has
none, the package's label names), and a later part's foreground wins where two overlap, in the
catalog's order of parts, as TotalSegmentator merges its parts. The result is on the input's grid,
like every part's. ``roi`` (``segment --roi liver,spleen``) keeps only those classes and runs only the
parts that segment one of them, as TotalSegmentator's ``--roi_subset``.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Set

import numpy as np

from ..errors import ModelError
from ..progress import Progress
from .catalog import CatalogEntry, load_catalog

__all__ = ["MultiPartSegmenter", "class_values", "keep_classes", "multipart_segmenter"]


class MultiPartSegmenter:
    """The ``Segmenter`` of a multi-part catalog model: ``segment(volume, progress, name)``."""

    def __init__(self, entry: CatalogEntry, packages: List[Any], roi: Optional[Sequence[str]] = None,
                 **segmenter_options: Any) -> None:
        if not entry.class_names:
            raise ModelError(f"catalog model '{entry.id}' names no classes; its parts cannot be merged")
        self.entry = entry
        self.packages = packages
        self.options = segmenter_options
        by_name = {name: value for value, name in entry.class_names.items()}
        self.value_maps: List[Dict[int, int]] = []
        for part, package in zip(entry.parts, packages):
            mapping = {}
            for label in package.manifest.labels:
                name = (part.classes or {}).get(label.value, label.name)
                if name not in by_name:
                    raise ModelError(f"{package.full_id}: class '{name}' (label {label.value}) is not one of "
                                     f"'{entry.id}''s classes in the catalog")
                mapping[label.value] = by_name[name]
            self.value_maps.append(mapping)
        self.roi: Optional[Set[int]] = None
        if roi:  # only these classes: only the parts that segment one of them run
            self.roi = set(class_values(entry.class_names, roi, entry.id))

    def _selected(self) -> List[int]:
        """Indices of the parts to run: all, or those segmenting a class of the ROI."""
        if self.roi is None:
            return list(range(len(self.packages)))
        return [i for i, mapping in enumerate(self.value_maps) if self.roi & set(mapping.values())]

    @property
    def manifest(self):
        """The first part's manifest (modality and input checks are the same for every part)."""
        return self.packages[0].manifest

    @property
    def model_id(self) -> str:
        return f"{self.entry.id}@{self.entry.version}"

    def labels(self) -> List[Any]:
        """Every class of the merged map, with the catalog's colours and terminology (else the parts')."""
        from ..labels import SegmentLabel, Terminology

        known = {}
        for package, mapping in zip(self.packages, self.value_maps):
            for label in package.manifest.labels:
                known[mapping[label.value]] = label
        labels = []
        for value, name in sorted(self.entry.class_names.items()):
            if self.roi is not None and value not in self.roi:
                continue
            source = known.get(value)
            style = (self.entry.segments or {}).get(value) or {}
            color = source.color if source is not None else SegmentLabel.default_for(value).color
            terminology = source.terminology if source is not None else None
            if "color" in style:
                color = tuple(style["color"])
            if "terminology" in style:
                terminology = Terminology.from_dict(style["terminology"])
            labels.append(SegmentLabel(value, name, color, terminology))
        return labels

    def segment(self, volume: Any, progress: Optional[Progress] = None, name: str = "input"):
        """Run every part and merge; returns the same kind of result as ``Segmenter.segment``."""
        from ..inference.engine import Segmenter
        from ..volume import Volume

        progress = progress or Progress()
        selected = self._selected()
        count = len(selected)
        top = max(self.entry.class_names)
        merged = None
        timings: Dict[str, float] = {}
        notes: List[str] = []
        first = None
        for index, chosen in enumerate(selected):
            part, package, mapping = self.entry.parts[chosen], self.packages[chosen], self.value_maps[chosen]
            if self.roi is not None:  # other classes stay background
                mapping = {value: target for value, target in mapping.items() if target in self.roi}
            progress.check()  # Cancel between parts
            step = progress.span(index / count, (index + 1) / count)
            step.update(0.0, f"Part {index + 1}/{count}: {part.name}")
            started = time.perf_counter()
            result = Segmenter(package, **self.options).segment(volume, step, name=name)
            first = first or result
            part_labels = result.labelmap.array
            if merged is None:
                merged = np.zeros(part_labels.shape, dtype=np.uint8 if top < 256 else np.uint16)
            lookup = np.zeros(max(int(part_labels.max()), max(mapping, default=0)) + 1, dtype=merged.dtype)
            for value, target in mapping.items():
                lookup[value] = target
            mapped = lookup[part_labels]
            np.copyto(merged, mapped, where=mapped != 0)  # a later part's foreground wins
            timings[f"part_{part.name}"] = time.perf_counter() - started
            notes.extend(f"{part.name}: {note}" for note in result.notes)
            del result, part_labels, mapped
        progress.update(1.0, f"Merged {count} part(s)")
        if self.roi is not None and count < len(self.packages):
            skipped = [self.entry.parts[i].name for i in range(len(self.packages)) if i not in selected]
            notes.append(f"--roi: ran {count} of {len(self.packages)} parts (not needed: {', '.join(skipped)})")
        labelmap = Volume(merged, first.labelmap.geometry)
        return type(first)(labelmap=labelmap, labels=self.labels(), model_id=self.model_id, device=first.device,
                           timings=timings, notes=notes)


def class_values(class_names: Dict[int, str], wanted: Sequence[str], model: str) -> List[int]:
    """The label values of the classes named in ``wanted`` (``--roi``); InputError naming an unknown one."""
    from ..errors import InputError

    by_name = {name.lower(): value for value, name in class_names.items()}
    values = []
    for name in wanted:
        value = by_name.get(name.strip().lower())
        if value is None:
            close = [n for n in class_names.values() if name.strip().lower()[:4] in n.lower()][:5]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise InputError(f"--roi: model '{model}' has no class '{name.strip()}'{hint}")
        values.append(value)
    return values


def keep_classes(result: Any, wanted: Sequence[str], model: str) -> Any:
    """``result`` with only the classes named in ``wanted`` (``--roi`` for a model of one network)."""
    from ..volume import Volume

    keep = set(class_values({label.value: label.name for label in result.labels}, wanted, model))
    array = result.labelmap.array
    array = np.where(np.isin(array, sorted(keep)), array, 0).astype(array.dtype)
    return type(result)(labelmap=Volume(array, result.labelmap.geometry),
                        labels=[label for label in result.labels if label.value in keep], model_id=result.model_id,
                        device=result.device, timings=result.timings, notes=result.notes)


def multipart_segmenter(name: Optional[str], registry: Any = None, roi: Optional[Sequence[str]] = None,
                        **segmenter_options: Any) -> Optional[
        MultiPartSegmenter]:
    """The merged segmenter when ``name`` is a catalog model of several parts; None for anything else
    (a package id, a folder, ``id@version``, a model of one part)."""
    from ..models.registry import ModelRegistry

    if not name or "/" in name or "@" in name:
        return None
    try:
        catalog = load_catalog()
    except ModelError:
        return None
    if name not in catalog.ids():
        return None
    entry = catalog.get(name)
    if not entry.multi_part:
        return None
    registry = registry or ModelRegistry()
    installed = {p.id: p for p in registry.list() if p.ok}
    if name in installed:  # a package of that very id (the user's own) is what they mean
        return None
    missing = [pid for pid in entry.package_ids if pid not in installed]
    if missing:
        if len(missing) == len(entry.parts):
            raise ModelError(f"'{name}' is not installed: run 'segmentai models install {name}'")
        raise ModelError(f"'{name}' is missing the part(s) {', '.join(missing)}: run 'segmentai models remove "
                         f"{name}' and 'segmentai models install {name}'")
    return MultiPartSegmenter(entry, [registry.get(pid) for pid in entry.package_ids], roi=roi, **segmenter_options)
