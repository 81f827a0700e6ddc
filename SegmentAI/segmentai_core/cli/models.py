"""``segmentai models``: list, show, import and remove model packages; list and install catalog models."""

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
    remove = commands.add_parser("remove", help="delete an imported or installed model")
    remove.add_argument("model", metavar="ID", help="model id or id@version (a catalog id removes all its parts)")
    trust = commands.add_parser(
        "trust", help="allow a TorchScript model (a program, not weights) to run on this machine",
        description="TorchScript files are programs: loading and running one runs its code with your "
                    "permissions. SegmentAI refuses them until you trust the exact file (by SHA-256). Trust "
                    "only models whose origin you know.")
    trust.add_argument("model", metavar="ID", help="model id, id@version or folder")
    untrust = commands.add_parser("untrust", help="withdraw a model's trust (it is refused again)")
    untrust.add_argument("model", metavar="ID", help="model id, id@version or folder")
    from .models_catalog import register_catalog_commands

    register_catalog_commands(commands)  # available, install
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
    from .models_catalog import run_catalog_command

    done = run_catalog_command(action, args)  # available, install, remove of a catalog model's parts
    if done is not None:
        return done
    registry = ModelRegistry()
    if action == "list":
        return _list(registry, args.json)
    if action == "show":
        package = registry.get(args.model)
        print(package.card())
        if args.verify:
            package.check_loadable()
            print("  weights:       SHA-256 verified; loads without running code" if not package.carries_code
                  else "  weights:       SHA-256 verified; TorchScript archive passed the static code check")
        return 0
    if action == "import":
        package = registry.import_package(args.path)
        print(f"imported {package.full_id} into {package.folder}")
        if package.carries_code and not package.code_trusted:
            print(f"note: {package.full_id} is a TorchScript program; it is refused until you run "
                  f"'segmentai models trust {package.id}'")
        return 0
    if action == "remove":
        package = registry.remove(args.model)
        print(f"removed {package.full_id if package.ok else package.folder.name} ({package.folder})")
        return 0
    if action in ("trust", "untrust"):
        return _trust(registry.get(args.model), action == "trust")
    raise AssertionError(f"unhandled models action {action}")  # argparse only allows the actions above


def _trust(package: Any, allow: bool) -> int:
    from ..errors import ModelError
    from ..models.code_guard import trust, trust_file, untrust

    if not package.carries_code:
        raise ModelError(f"model {package.full_id} holds weights only ({package.manifest.weights_format}); "
                         "it needs no trust")
    sha = package.manifest.weights_sha256
    if not allow:
        changed = untrust(sha)
        print(f"{package.full_id}: {'no longer trusted' if changed else 'was not trusted'} ({trust_file()})")
        return 0
    package.check_loadable()  # hash and static code check before the user's trust is recorded
    trust(sha, package.full_id, "segmentai models trust")
    print(f"trusted {package.full_id} (sha256 {sha[:12]}...): its code may now run with your permissions; "
          f"recorded in {trust_file()}")
    return 0
