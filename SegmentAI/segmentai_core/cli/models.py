"""``segmentai models``: list, show, import and remove model packages."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``models`` command and its sub-commands."""
    parser = subparsers.add_parser(
        "models",
        help="list, show, import or remove model packages",
        description="Manage model packages: built-in ones (Resources/Models) and imported ones "
        "($SEGMENTAI_HOME/models or the user data folder).",
    )
    commands = parser.add_subparsers(dest="models_command", metavar="ACTION")
    listing = commands.add_parser("list", help="list the installed models")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    show = commands.add_parser("show", help="print a model's card")
    show.add_argument("model", metavar="ID", help="model id, id@version or folder")
    show.add_argument("--verify", action="store_true", help="also check the weights' SHA-256")
    importing = commands.add_parser(
        "import", help="verify a model folder (SegmentAI package, nnU-Net v2 folder or MONAI bundle) and add it")
    importing.add_argument("path", metavar="PATH", help="model package folder (holding manifest.json), trained nnU-Net "
                           "v2 folder (dataset.json, plans.json, fold_*) or MONAI bundle (configs/metadata.json)")
    remove = commands.add_parser("remove", help="delete an imported model")
    remove.add_argument("model", metavar="ID", help="model id or id@version")
    parser.set_defaults(func=run, models_parser=parser)


def _entry(package: Any, default_id: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "id": package.id,
        "version": package.version if package.ok else None,
        "source": package.source,
        "path": str(package.folder),
        "default": package.ok and package.builtin and package.full_id == default_id,
        "error": package.error,
    }
    if package.ok:
        m = package.manifest
        entry.update(
            name=m.name,
            task=m.task,
            modality=m.modality,
            labels={str(label.value): label.name for label in m.labels},
        )
    return entry


def _list(registry: Any, as_json: bool) -> int:
    packages = registry.list()
    try:
        default_id = registry.default().full_id
    except Exception:  # no built-in model: nothing is marked default
        default_id = ""
    entries: List[Dict[str, Any]] = [_entry(p, default_id) for p in packages]
    if as_json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print(f"no models found (built-in: {registry.builtin_dir}, user: {registry.user_dir})")
        return 0
    rows = [("ID", "VERSION", "SOURCE", "DESCRIPTION")]
    for e in entries:
        marker = " (default)" if e["default"] else ""
        text = f"{e['name']}: {e['task']}{marker}" if e["error"] is None else f"BROKEN: {e['error']}"
        rows.append((e["id"], e["version"] or "?", e["source"], text))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``segmentai models ACTION``."""
    from ..models import ModelRegistry

    action = getattr(args, "models_command", None)
    if action is None:
        args.models_parser.print_help(sys.stderr)
        return 2
    registry = ModelRegistry()
    if action == "list":
        return _list(registry, args.json)
    if action == "show":
        package = registry.get(args.model)
        print(package.card())
        if args.verify:
            package.verify()
            print("  weights:       SHA-256 verified")
        return 0
    if action == "import":
        package = registry.import_package(args.path)
        print(f"imported {package.full_id} into {package.folder}")
        return 0
    if action == "remove":
        package = registry.remove(args.model)
        print(f"removed {package.full_id if package.ok else package.folder.name} ({package.folder})")
        return 0
    raise AssertionError(f"unhandled models action {action}")  # argparse only allows the four above
