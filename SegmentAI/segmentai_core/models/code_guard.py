"""Model files that are programs: TorchScript is refused unless the user trusted that exact file.

A TorchScript file is code, not weights: ``torch.jit.load`` runs the archive's ``__setstate__``
methods while loading, and ``forward`` may call any TorchScript operator, including ones that open
and write files (``aten::from_file``, ``aten::save``). ``weights_only`` does not apply. So:

1. **Refused by default.** A TorchScript package runs only when the user trusted its weights file
   by SHA-256 (``segmentai models trust ID``, recorded in :func:`trust_file`), or for one run with
   ``--trust-code``. Nothing a web client sends can set either.
2. **Checked even when trusted**, before anything is loaded: the archive's serialized code may not
   define ``__setstate__`` (which runs at load time), call a denied operator or a custom operator
   namespace, or reference registered C++ classes. After loading, every method's inlined graph is
   walked and any operator outside the allowed namespaces or on the deny list is refused before the
   network ever runs.

The check is a second line behind the trust decision, not a sandbox: a trusted file is still code.
ONNX files are not executed by SegmentAI at all.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Set

from ..errors import ModelError

__all__ = [
    "DENIED_OPERATORS", "TRUST_FILE_NAME", "check_torchscript_archive", "check_torchscript_graphs",
    "is_trusted", "refusal_message", "trust", "trust_file", "trusted_entries", "untrust",
]

TRUST_FILE_NAME = "trusted-code.json"

ALLOWED_NAMESPACES = frozenset({"aten", "prim", "quantized"})
"""Operator namespaces a trusted TorchScript network may use: torch's own tensor operators."""

DENIED_OPERATORS = frozenset({
    # files and serialization
    "from_file", "save", "load", "_load_for_mobile", "_save_for_mobile", "_save_parameters",
    # memory outside the tensor's own storage, swapped storages
    "set_", "as_strided", "as_strided_", "as_strided_scatter", "_set_storage", "unsafe_chunk_storage",
    # threads, sleeping, futures (a network never needs them)
    "sleep", "fork", "wait", "_fork", "_wait", "awaitable", "awaitable_wait",
    # dynamic dispatch into Python or loaded libraries
    "PythonOp", "CallPython", "rpc_async", "rpc_sync", "rpc_remote",
})
"""Operator names (without namespace) refused in any TorchScript graph or serialized code."""

_CODE_CALL = re.compile(r"\btorch\.([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_CUSTOM_OP = re.compile(r"\bops\.([A-Za-z_][A-Za-z0-9_]*)\.")
_SETSTATE = re.compile(r"\bdef\s+__setstate__\s*\(")
_CLASSES = re.compile(r"__torch__\.torch\.classes\.|\btorch\.classes\.")


# --- the user's trust decisions ----------------------------------------------------------------

def trust_file() -> Path:
    """``$SEGMENTAI_HOME/trusted-code.json`` (or beside the user's ``models`` folder)."""
    from ..resources import default_user_dir

    return default_user_dir().parent / TRUST_FILE_NAME


def trusted_entries(path: Optional[Path] = None) -> Dict[str, dict]:
    """SHA-256 → {model, trusted_at, reason}. A missing or unreadable file trusts nothing."""
    path = path or trust_file()
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError, RecursionError):
        return {}
    entries = data.get("trusted") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and re.fullmatch(r"[0-9a-f]{64}", k)
            and isinstance(v, dict)}


def is_trusted(sha256: str, path: Optional[Path] = None) -> bool:
    return sha256 in trusted_entries(path)


def _write(entries: Dict[str, dict], path: Path) -> None:
    from ..io.staging import write_json_atomic

    write_json_atomic(path, {"trusted": entries})


def trust(sha256: str, model: str, reason: str, path: Optional[Path] = None) -> None:
    """Record that the user allows the file with ``sha256`` (model ``model``) to run its code."""
    path = path or trust_file()
    entries = trusted_entries(path)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entries[sha256] = {"model": model, "trusted_at": stamp, "reason": reason}
    _write(entries, path)


def untrust(sha256: str, path: Optional[Path] = None) -> bool:
    """Forget a trust decision; True if there was one."""
    path = path or trust_file()
    entries = trusted_entries(path)
    if entries.pop(sha256, None) is None:
        return False
    _write(entries, path)
    return True


def refusal_message(model_id: str) -> str:
    return (f"model '{model_id}' is a TorchScript program, which runs its own code when loaded; SegmentAI "
            f"refuses it unless you trust it: 'segmentai models trust {model_id}' (or --trust-code for one run)")


# --- static and graph checks -------------------------------------------------------------------

def _denied(name: str) -> bool:
    return name in DENIED_OPERATORS or "file" in name.lower()


def check_torchscript_archive(data: bytes, where: str) -> None:
    """Refuse an archive whose serialized code would run at load time or call a denied operator.

    Reads the zip's ``code/`` sources as text; nothing is unpickled or compiled.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError) as error:
        raise ModelError(f"{where}: not a TorchScript archive ({error})") from error
    sources = [n for n in names if "/code/" in f"/{n}" and n.endswith(".py")]
    if not sources:
        raise ModelError(f"{where}: not a TorchScript archive (no serialized code)")
    for name in sources:
        text = archive.read(name).decode("utf-8", "replace")
        if _SETSTATE.search(text):
            raise ModelError(f"{where}: refused: its code defines __setstate__, which would run while loading")
        if _CLASSES.search(text):
            raise ModelError(f"{where}: refused: its code uses registered C++ classes (torch.classes)")
        for namespace in _CUSTOM_OP.findall(text):
            if namespace not in ALLOWED_NAMESPACES:
                raise ModelError(f"{where}: refused: its code calls custom operators (ops.{namespace})")
        for operator in _CODE_CALL.findall(text):
            if _denied(operator):
                raise ModelError(f"{where}: refused: its code calls torch.{operator}, which a network never needs")


def _nodes(block) -> Iterator:
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _nodes(inner)


def _operator_kinds(module) -> Set[str]:
    kinds: Set[str] = set()
    modules: Iterable = module.modules() if hasattr(module, "modules") else [module]
    for sub in modules:
        scripted = getattr(sub, "_c", None)
        if scripted is None:
            continue
        for method_name in scripted._method_names():
            graph = getattr(sub, method_name).inlined_graph
            kinds.update(node.kind() for node in _nodes(graph))
    return kinds


def check_torchscript_graphs(module, where: str) -> None:
    """Refuse a loaded TorchScript module whose methods use operators outside the allow-list."""
    for kind in sorted(_operator_kinds(module)):
        namespace, _, name = kind.partition("::")
        if namespace not in ALLOWED_NAMESPACES:
            raise ModelError(f"{where}: refused: its graph uses the operator {kind}")
        if _denied(name):
            raise ModelError(f"{where}: refused: its graph uses {kind}, which a network never needs")
