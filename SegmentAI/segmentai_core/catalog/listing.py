"""The catalog as the panels show it: one row per model with its texts (size, licence, installed?).

The Slicer panel and the web app list the same rows (:func:`catalog_rows`, built on
:func:`.install.available_models`), with a one-line summary for a list and a card of every fact
to read before downloading (licence first: some weights are not for commercial use).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .catalog import Catalog

__all__ = ["catalog_rows", "install_question", "row_card"]


def _size(value: Optional[int]) -> str:
    from .download import format_bytes

    return format_bytes(value) if value is not None else "size unknown"


def _licence(row: Dict[str, Any]) -> str:
    suffix = " (non-commercial)" if row["commercial_use"] is False else ""
    return f"{row['license']}{suffix}"


def _installed(row: Dict[str, Any]) -> str:
    if not row["supported"]:
        needs = "sigmoid outputs" if row.get("multi_label") else f"needs {row['architecture']}"
        return f"cannot be installed yet ({needs})"
    return {"yes": "installed", "no": "not installed"}.get(row["installed"], f"partly installed ({row['installed']})")


def catalog_rows(registry: Any, catalog: Optional[Catalog] = None) -> List[Dict[str, Any]]:
    """:func:`.install.available_models`' rows with ``size_text``, ``license_text``, ``installed_text``,
    ``summary`` (one line), ``card`` (several) and ``installable`` (supported and not installed)."""
    from .install import available_models

    rows = available_models(registry, catalog)
    for row in rows:
        row["size_text"] = _size(row["size_bytes"])
        row["license_text"] = _licence(row)
        row["installed_text"] = _installed(row)
        row["installable"] = bool(row["supported"] and row["installed"] == "no")
        row["summary"] = (f"{row['id']}: {row['modality']}, {row['classes']} classes, {row['size_text']}, "
                          f"{row['license_text']}, {row['installed_text']}")
        row["card"] = row_card(row)
    return rows


def row_card(row: Dict[str, Any]) -> str:
    """Every fact of one row, the licence before the download size."""
    parts = len(row["parts"])
    lines = [f"{row['title']} ({row['id']} {row['version']}, {row['provider']})",
             f"Task: {row['task']}",
             f"Modality: {row['modality']}; classes: {row['classes']}",
             f"Weights licence: {row['license_text']}",
             f"Download: {row['size_text']} in {parts} part(s)",
             f"Installed: {row['installed_text']}",
             f"Cite: {row['citation']}"]
    return "\n".join(lines)


def install_question(row: Dict[str, Any]) -> str:
    """What the user agrees to before a download starts."""
    commercial = "" if row["commercial_use"] is not False else " These weights are NOT for commercial use."
    return (f"Install {row['id']} ({row['title']})? Weights licence: {row['license_text']}.{commercial} "
            f"Download: {row['size_text']} from {row['provider']}. Cite: {row['citation']}")
