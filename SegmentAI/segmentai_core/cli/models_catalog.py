"""``segmentai models available | install ID | remove ID``: the catalog of public models.

Sub-commands of ``segmentai models`` (see :mod:`.models`); the work is done by
:mod:`segmentai_core.catalog`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

__all__ = ["register_catalog_commands", "run_catalog_command"]


def register_catalog_commands(commands: Any) -> None:
    """Add ``available`` and ``install`` to the ``models`` sub-parsers."""
    available = commands.add_parser("available", help="list the public models SegmentAI can download and install")
    available.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    install = commands.add_parser(
        "install", help="download, verify and install a model of the catalog ('models available')",
        description="Download a catalog model (resuming an interrupted download), check its size and hash, "
                    "unpack it safely and import it. Without network access, download the archive(s) "
                    "elsewhere and pass them with --from-file.")
    install.add_argument("model", metavar="ID", help="catalog id (see 'segmentai models available')")
    install.add_argument("--from-file", action="append", default=[], metavar="ARCHIVE",
                         help="an archive already downloaded (once per part for models of several parts)")
    install.add_argument("--quiet", action="store_true", help="no progress bar")


def _size(value: Optional[int]) -> str:
    from ..catalog.download import format_bytes

    return format_bytes(value) if value is not None else "unknown"


def _licence(row: Dict[str, Any]) -> str:
    if row["commercial_use"] is False:
        return f"{row['license']} (non-commercial)"
    return row["license"]


def _available(as_json: bool) -> int:
    from ..catalog.install import available_models
    from ..models import ModelRegistry

    rows = available_models(ModelRegistry())
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    table: List[tuple] = [("ID", "MODALITY", "CLASSES", "SIZE", "LICENCE", "INSTALLED", "TASK")]
    for row in rows:
        installed = row["installed"] if row["supported"] else f"{row['installed']} (needs {row['architecture']})"
        table.append((row["id"], row["modality"], str(row["classes"]), _size(row["size_bytes"]), _licence(row),
                      installed, row["task"]))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1])
    print("\nInstall one with 'segmentai models install ID'; sizes marked unknown are not published by the provider.")
    return 0


def _install(args: argparse.Namespace) -> int:
    from ..catalog import load_catalog
    from ..catalog.install import describe_size, install_model
    from ..models import ModelRegistry
    from ..progress import Progress
    from .progress_bar import TerminalProgress

    catalog = load_catalog()
    entry = catalog.get(args.model)
    commercial = entry.license.get("commercial_use")
    licence = entry.license_text + ("" if commercial is not False else " - not for commercial use")
    print(f"{entry.id} {entry.version}: {entry.title}\n  weights licence: {licence}; download: "
          f"{describe_size(entry)} in {len(entry.parts)} part(s) from {entry.provider}\n  cite: {entry.citation}",
          flush=True)
    bar = TerminalProgress(f"Installing {entry.id}", enabled=not args.quiet)  # messages carry bytes and rate
    try:
        result = install_model(entry, registry=ModelRegistry(), catalog=catalog, files=args.from_file,
                               progress=Progress(bar), say=lambda text: print(f"note: {text}", file=sys.stderr))
    finally:
        bar.close()
    for package in result.packages:
        print(f"installed {package.full_id} into {package.folder}")
    if entry.multi_part:
        print(f"'{entry.id}' is {len(entry.parts)} networks, installed as {', '.join(entry.package_ids)}; "
              f"'segmentai segment INPUT -o OUTPUT --model {entry.id}' runs them all and merges their classes")
    return 0


def _remove_catalog(model: str) -> Optional[int]:
    """``models remove ID`` for a catalog model of several parts; None when ID is not one (the plain
    registry removal then runs)."""
    from ..catalog import load_catalog
    from ..catalog.install import installed_parts, remove_model
    from ..errors import ModelError
    from ..models import ModelRegistry

    try:
        catalog = load_catalog()
    except ModelError:  # no catalog in this installation: plain removal
        return None
    if model not in catalog.ids():
        return None
    entry = catalog.get(model)
    registry = ModelRegistry()
    if not entry.multi_part or model in {p.id for p in installed_parts(entry, registry).values()}:
        return None
    for package in remove_model(model, registry, catalog):
        print(f"removed {package.full_id} ({package.folder})")
    return 0


def run_catalog_command(action: str, args: argparse.Namespace) -> Optional[int]:
    """Run ``available``, ``install`` or the catalog case of ``remove``; None when not one of those."""
    if action == "available":
        return _available(args.json)
    if action == "install":
        return _install(args)
    if action == "remove":
        return _remove_catalog(args.model)
    return None
