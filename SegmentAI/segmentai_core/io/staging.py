"""Outputs written whole or not at all: hidden temporaries beside the target, committed together.

The one place of SegmentAI's atomic writes. Every writer first writes ``.<name>.tmp-<8 hex><ext>``
in the target's folder and renames it over the target once complete (:func:`temporary_path`;
:func:`write_json_atomic` for JSON files such as manifests, ``dataset.json`` and provenance
records). A folder (a model package, an export) is filled in a hidden staging folder beside it and
renamed into place at the end (:func:`staged_folder`). :func:`commit` renames several staged files at the end
of a job, with Ctrl-C held back for those few renames, so a job writes all of its outputs or
none. A writer killed outright (``kill -9``, power loss) can still leave a temporary behind:
:func:`remove_stale_temporaries` deletes ours once they are old, on the next write there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Tuple, Union

from ..errors import OutputError

__all__ = ["STALE_AFTER_S", "check_writable_folder", "commit", "remove_stale_temporaries", "staged_folder",
           "temporary_path", "write_json_atomic"]

PathLike = Union[str, Path]
STALE_AFTER_S = 6 * 3600.0
"""A temporary of ours older than this belongs to a write that was killed: no write lasts that long."""

_COMPOUND = (".seg.nrrd", ".nii.gz")


def _split(name: str) -> Tuple[str, str]:
    lower = name.lower()
    for ext in _COMPOUND:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], name[-len(ext):]
    stem, dot, suffix = name.rpartition(".")
    return (stem, dot + suffix) if stem else (name, "")


def temporary_path(path: PathLike) -> Path:
    """A fresh hidden name beside ``path`` that keeps its (compound) extension last.

    Stale temporaries for ``path`` (left by a killed write) are removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    base, ext = _split(path.name)
    return path.parent / f".{base}.tmp-{secrets.token_hex(4)}{ext}"


def remove_stale_temporaries(path: PathLike, max_age_s: float = STALE_AFTER_S) -> List[Path]:
    """Delete our temporaries for ``path`` (same name, ``.tmp-`` + 8 hex) older than ``max_age_s``."""
    path = Path(path)
    base, ext = _split(path.name)
    pattern = re.compile(rf"^\.{re.escape(base)}\.tmp-[0-9a-f]{{8}}{re.escape(ext)}$")
    removed: List[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > max_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def check_writable_folder(folder: PathLike, what: str = "output") -> None:
    """OutputError unless files can be created in ``folder`` (or in the folder that would hold it).

    Tried for real with a probe file, which is removed at once: permission bits do not tell
    (root, read-only mounts, network shares). A missing folder is not created here.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{folder}: cannot hold the {what}: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".segmentai-probe-", dir=existing)
    except OSError as error:
        raise OutputError(f"{folder}: cannot write the {what} there ({error.strerror or error})") from None
    os.close(fd)
    os.unlink(probe)


@contextmanager
def _sigint_held() -> Iterator[List[int]]:
    """Ctrl-C received inside the block is recorded instead of raised (main thread only)."""
    received: List[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def commit(pairs: Sequence[Tuple[Path, Path]]) -> bool:
    """Rename each staged file over its target, all of them with Ctrl-C held back.

    Returns True when Ctrl-C came during the renames (they were completed anyway). A rename
    that fails raises OutputError naming the targets already in place.
    """
    done: List[Path] = []
    with _sigint_held() as received:
        for staged, final in pairs:
            try:
                os.replace(staged, final)
            except OSError as error:
                written = f"; written: {', '.join(map(str, done))}" if done else "; nothing was written"
                raise OutputError(f"{final} cannot be written ({error.strerror or error}){written}") from None
            done.append(Path(final))
    return bool(received)


def write_json_atomic(path: PathLike, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON to a temporary beside ``path``, then rename it over ``path``.

    The temporary is created for the owner only (mode 0600, as :func:`tempfile.mkstemp` makes
    them); the folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_path(path)
    handle = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


@contextmanager
def staged_folder(folder: PathLike, what: str = "output") -> Iterator[Path]:
    """A hidden, empty staging folder beside ``folder``, renamed to ``folder`` when the block succeeds.

    ``folder`` must not exist or be an empty folder (OutputError otherwise, naming ``what``). On
    any error, Ctrl-C included, the staging folder is removed and ``folder`` does not appear.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OutputError(f"{folder} exists already; choose a new folder for the {what}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield staging
        if folder.exists():
            folder.rmdir()  # empty (checked above); os.replace cannot replace a folder on Windows
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
