"""Unpack a downloaded zip or tar archive safely into a new folder.

Every member is checked before anything is written: its name must stay inside the folder (no
absolute path, drive letter, ``..`` component or NUL), and it must be a regular file or a folder
(links, hard links, devices and FIFOs are refused, as the model registry refuses them in a package).
The archive's declared size and member count have limits, and the bytes actually written are counted
against the declared sizes, so a lying header cannot fill the disk. Files are created with plain
permissions (no set-uid, no times or owners from the archive). Nothing in the archive is executed
or unpickled here; the importers then read checkpoints without running pickled code.

Any refusal or failure (a full disk, Ctrl-C) removes the folder: it is there whole or not at all.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator, List, Optional

from ..errors import ModelError
from ..progress import Progress
from . import download as _download

__all__ = ["MAX_MEMBERS", "MAX_UNPACKED_BYTES", "archive_kind", "unpack_archive"]

MAX_MEMBERS = 100_000
MAX_UNPACKED_BYTES = 64 << 30
"""No model archive SegmentAI installs unpacks to more than this (TotalSegmentator's largest: a few GB)."""
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class _Member:
    name: str  # the safe relative path, '/'-separated
    is_dir: bool
    size: int
    open: Callable[[], BinaryIO]


def archive_kind(path: Path) -> Optional[str]:
    """``"zip"``, ``"tar"`` or None."""
    try:
        if zipfile.is_zipfile(path):
            return "zip"
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        return None
    return None


def _safe_name(raw: str, archive: str) -> str:
    """The member's path relative to the destination, or ModelError when it would land elsewhere."""
    if "\x00" in raw:
        raise ModelError(f"{archive}: refused: a member name holds a NUL character")
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ModelError(f"{archive}: refused: member '{raw}' has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ModelError(f"{archive}: refused: member '{raw}' points outside the folder ('..')")
    if not parts:
        raise ModelError(f"{archive}: refused: a member has an empty name")
    return "/".join(parts)


def _zip_members(archive: zipfile.ZipFile, where: str) -> Iterator[_Member]:
    for info in archive.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ModelError(f"{where}: refused: member '{info.filename}' is a link; model archives may hold "
                             "only files and folders")
        if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ModelError(f"{where}: refused: member '{info.filename}' is a device or special file")
        if info.flag_bits & 0x1:
            raise ModelError(f"{where}: refused: member '{info.filename}' is encrypted")
        name = _safe_name(info.filename, where)
        is_dir = info.is_dir() or stat.S_ISDIR(mode)
        yield _Member(name, is_dir, 0 if is_dir else int(info.file_size),
                      lambda info=info: archive.open(info, "r"))


def _tar_members(archive: tarfile.TarFile, where: str) -> Iterator[_Member]:
    for info in archive.getmembers():
        if info.issym() or info.islnk():
            raise ModelError(f"{where}: refused: member '{info.name}' is a link; model archives may hold "
                             "only files and folders")
        if not (info.isreg() or info.isdir()):
            raise ModelError(f"{where}: refused: member '{info.name}' is a device or special file")
        name = _safe_name(info.name, where)

        def opener(info=info):
            stream = archive.extractfile(info)
            if stream is None:  # pragma: no cover - isreg() members always have data
                raise ModelError(f"{where}: member '{info.name}' has no data")
            return stream

        yield _Member(name, info.isdir(), 0 if info.isdir() else int(info.size), opener)


def _check_members(members: List[_Member], where: str, max_bytes: int, max_members: int) -> int:
    if len(members) > max_members:
        raise ModelError(f"{where}: refused: {len(members)} members, more than the {max_members} a model "
                         "archive may hold")
    seen = {}
    for member in members:
        key = member.name.lower()  # two names that collide on a case-insensitive disk
        if key in seen and not (member.is_dir and seen[key]):
            raise ModelError(f"{where}: refused: member '{member.name}' appears twice")
        seen[key] = member.is_dir
    files = {m.name for m in members if not m.is_dir}
    for member in members:
        parents = PurePosixPath(member.name).parents
        clash = next((str(p) for p in parents if str(p) in files), None)
        if clash is not None:
            raise ModelError(f"{where}: refused: '{clash}' is both a file and a folder")
    total = sum(m.size for m in members)
    if total > max_bytes:
        raise ModelError(f"{where}: refused: it would unpack to {_download.format_bytes(total)}, more than the "
                         f"{_download.format_bytes(max_bytes)} limit")
    return total


def unpack_archive(archive: Path, destination: Path, progress: Optional[Progress] = None,
                   max_bytes: int = MAX_UNPACKED_BYTES, max_members: int = MAX_MEMBERS) -> Path:
    """Unpack the zip or tar ``archive`` into the new folder ``destination``; returns ``destination``."""
    archive, destination = Path(archive), Path(destination)
    where = archive.name
    kind = archive_kind(archive)
    if kind is None:
        raise ModelError(f"{where} is not a zip or tar archive")
    if destination.exists():
        raise ModelError(f"{destination} exists already")
    try:
        opened = zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive, "r:*")
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        raise ModelError(f"{where}: cannot read the archive ({error})") from None
    with opened:
        try:
            members = list(_zip_members(opened, where) if kind == "zip" else _tar_members(opened, where))
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise ModelError(f"{where}: damaged archive ({error})") from None
        total = _check_members(members, where, max_bytes, max_members)
        _check_space(destination.parent, total, where)
        try:
            destination.mkdir(parents=False)
        except OSError as error:
            raise ModelError(f"cannot create {destination} ({error.strerror or error})") from None
        try:
            _extract(members, destination, total, where, progress)
        except BaseException as error:
            shutil.rmtree(destination, ignore_errors=True)
            if isinstance(error, OSError):
                if error.errno == errno.ENOSPC:
                    raise ModelError(f"disk full while unpacking {where}; nothing was kept") from None
                raise ModelError(f"cannot unpack {where} ({error.strerror or error}); nothing was kept") from None
            if isinstance(error, (zipfile.BadZipFile, tarfile.TarError, EOFError)):
                raise ModelError(f"{where}: damaged archive ({error}); nothing was kept") from None
            raise
    return destination


def _extract(members: List[_Member], destination: Path, total: int, where: str,
             progress: Optional[Progress]) -> None:
    written = 0
    for member in members:
        if progress is not None:
            progress.update(written / total if total else 0.0, f"Unpacking {where}")
        target = destination.joinpath(*member.name.split("/"))
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True, mode=0o755)
            continue
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        count = 0
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(descriptor, "wb") as out, member.open() as source:
            while True:
                data = source.read(CHUNK_BYTES)
                if not data:
                    break
                count += len(data)
                if count > member.size:
                    raise ModelError(f"{where}: refused: member '{member.name}' holds more data than its header "
                                     "declares")
                _download.write_chunk(out, data)
                if progress is not None:
                    progress.check()
        written += count
    if progress is not None:
        progress.update(1.0, f"Unpacked {where}")


def _check_space(folder: Path, needed: int, where: str) -> None:
    shortfall = _download.space_shortfall(folder, needed)
    if shortfall:
        raise ModelError(f"not enough disk space to unpack {where}: {shortfall}")

