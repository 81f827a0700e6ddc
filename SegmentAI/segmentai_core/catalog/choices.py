"""What the panels' model selectors list: installed packages, with a multi-part catalog model as one entry.

TotalSegmentator's ``total`` installs as five packages (``total.part1`` ...); a user picks ``total``,
which runs the five and merges them (:func:`.multipart.multipart_segmenter`). :func:`model_choices`
lists every usable package except the parts of a multi-part model whose parts are all installed, and
that model once, where its first part would be. :func:`model_card` is a choice's card.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..errors import ModelError
from .catalog import Catalog, CatalogEntry, load_catalog

__all__ = ["merged_models", "model_card", "model_choices"]


def merged_models(registry: Any, catalog: Optional[Catalog] = None) -> Dict[str, CatalogEntry]:
    """Catalog id → entry, for the multi-part models whose parts are all installed (no package has that id)."""
    if catalog is None:
        try:
            catalog = load_catalog()
        except ModelError:  # no catalog in this installation: packages only
            return {}
    ids = {p.id for p in registry.list() if p.ok}
    return {e.id: e for e in catalog if e.multi_part and e.id not in ids and set(e.package_ids) <= ids}


def model_choices(registry: Any, catalog: Optional[Catalog] = None) -> List[Tuple[str, str]]:
    """(value, title) per selectable model: ``id@version`` of a package, or a multi-part model's catalog id."""
    merged = merged_models(registry, catalog)
    part_of = {pid: entry for entry in merged.values() for pid in entry.package_ids}
    choices: List[Tuple[str, str]] = []
    for package in (p for p in registry.list() if p.ok):
        entry = part_of.get(package.id)
        if entry is None:
            choices.append((package.full_id, f"{package.manifest.name} ({package.full_id})"))
        elif not any(value == entry.id for value, _ in choices):
            choices.append((entry.id, f"{entry.title} ({entry.id}: {len(entry.parts)} networks, "
                                      f"{entry.class_count} classes)"))
    return choices


def model_card(model: str, registry: Any, catalog: Optional[Catalog] = None) -> str:
    """The card of a choice: a package's own card, or the merged model's (its parts' cards after it)."""
    entry = merged_models(registry, catalog).get(model)
    if entry is None:
        return registry.get(model).card()
    parts = [registry.get(pid) for pid in entry.package_ids]
    head = [f"{entry.title} ({entry.id} {entry.version}, {entry.provider})", f"Task: {entry.task}",
            f"Modality: {entry.modality}; {entry.class_count} classes from {len(parts)} networks run in turn "
            "and merged", f"Weights licence: {entry.license_text}", f"Cite: {entry.citation}"]
    return "\n".join(head + [""] + [f"--- {p.full_id} ---\n{p.card()}" for p in parts])
