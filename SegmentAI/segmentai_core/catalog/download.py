"""HTTP(S) downloads with urllib: progress with bytes and rate, resume with HTTP Range, size and hash checks.

A download writes ``<name>.part`` beside its destination and renames it to ``<name>`` only once
its size and hashes match what is expected. An interrupted download (Ctrl-C, Cancel, a dropped
connection, a timeout) keeps the ``.part`` file, and the next attempt asks the server for the
rest (``Range: bytes=N-``); a server that ignores the range sends everything again and the file
restarts. A wrong size or hash, or a full disk, deletes the ``.part``: nothing is left behind.
Every failure is one :class:`DownloadError` line (offline, refused, HTTP 404, timed out ...).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from ..errors import Cancelled, ModelError
from ..progress import Progress

__all__ = ["ByteCallback", "DownloadError", "Expected", "download", "format_bytes", "verify_file", "write_chunk"]

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
PART_SUFFIX = ".part"

ByteCallback = Callable[[int, Optional[int], float], None]
"""Receives the bytes on disk so far, the total (None when unknown) and the current rate in bytes/s."""


class DownloadError(ModelError):
    """A download failed; ``unreachable`` is True when the host could not be reached or answered nothing
    usable (offline, refused, DNS, timeout, HTTP error): installing from a file is the way out."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Expected:
    """What the finished file must be; None fields are unknown and not checked."""

    size: Optional[int] = None
    sha256: Optional[str] = None
    sha1: Optional[str] = None

    @property
    def has_hash(self) -> bool:
        return bool(self.sha256 or self.sha1)


def format_bytes(count: Optional[float]) -> str:
    """``1536`` → ``1.5 KB``; decimal units, as download sizes are usually given."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover


def write_chunk(stream: BinaryIO, data: bytes) -> None:
    """Every byte SegmentAI downloads or unpacks goes through here (one place to fail, e.g. a full disk)."""
    stream.write(data)


def _hashes(path: Path) -> "tuple[str, str]":
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def verify_file(path: Path, expected: Expected, what: str) -> None:
    """ModelError (one line) when ``path`` has another size or hash than ``expected``."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise ModelError(f"{what} has {size} bytes, not the {expected.size} expected")
    if not expected.has_hash:
        return
    sha256, sha1 = _hashes(path)
    if expected.sha256 and sha256 != expected.sha256.lower():
        raise ModelError(f"{what} has SHA-256 {sha256[:16]}..., not the {expected.sha256[:16]}... expected")
    if expected.sha1 and sha1 != expected.sha1.lower():
        raise ModelError(f"{what} has SHA-1 {sha1[:16]}..., not the {expected.sha1[:16]}... expected")


def _reason(error: BaseException) -> str:
    """A few words for a network failure."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason or ''}".strip()
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name not found (offline, or no DNS)"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error ({getattr(reason, 'reason', None) or reason})"
    if isinstance(reason, (ConnectionResetError, http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return "connection closed by the server"
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "network unreachable (offline?)"
    text = str(getattr(reason, "strerror", None) or reason).strip().splitlines()
    return text[0] if text else type(reason).__name__


def _content_range_start(header: Optional[str]) -> Optional[int]:
    match = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", header or "")
    return int(match.group(1)) if match else None


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "SegmentAI-model-installer", "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def download(url: str, destination: Path, expected: Expected = Expected(), progress: Optional[Progress] = None,
             on_bytes: Optional[ByteCallback] = None, timeout_s: float = DEFAULT_TIMEOUT_S,
             label: Optional[str] = None) -> Path:
    """Download ``url`` to ``destination`` (resuming ``destination.part``); returns ``destination``.

    ``progress`` gets the fraction and a message with bytes and rate (and carries Cancel);
    ``on_bytes`` gets raw numbers. A destination that exists already and matches ``expected``
    is used as it is.
    """
    destination = Path(destination)
    label = label or destination.name
    part = destination.with_name(destination.name + PART_SUFFIX)
    if destination.is_file():
        try:
            verify_file(destination, expected, label)
            return destination
        except ModelError:
            _remove(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(2):  # a second time only after a refused range (HTTP 416)
        offset = part.stat().st_size if part.is_file() else 0
        if expected.size is not None and offset > expected.size:
            _remove(part)
            offset = 0
        if expected.size is not None and offset == expected.size:
            break  # complete already: verify below
        try:
            response = _open(url, offset, timeout_s)
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset > 0:
                _remove(part)  # the server cannot continue this file: start again
                continue
            raise DownloadError(f"cannot download {url}: {_reason(error)}", unreachable=True) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            raise DownloadError(f"cannot download {url}: {_reason(error)}", unreachable=True) from None
        except ValueError as error:
            raise DownloadError(f"cannot download {url}: {error}") from None
        with response:
            _receive(response, url, part, offset, expected, progress, on_bytes, label)
        break
    else:  # pragma: no cover - two refused ranges in a row
        raise DownloadError(f"cannot download {url}: the server refuses to resume or restart it", unreachable=True)
    try:
        verify_file(part, expected, f"the download of {label}")
    except ModelError as error:
        _remove(part)
        raise DownloadError(f"{error}; the download was deleted (the file on the server differs from the "
                            "catalog's, or it was damaged on the way)") from None
    os.replace(part, destination)
    return destination


def _receive(response, url: str, part: Path, offset: int, expected: Expected, progress: Optional[Progress],
             on_bytes: Optional[ByteCallback], label: str) -> None:
    status = getattr(response, "status", 200)
    if offset > 0 and (status != 206 or _content_range_start(response.headers.get("Content-Range")) != offset):
        offset = 0  # the server ignored the range: it sends the whole file
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length and length.isdigit() else expected.size
    if expected.size is not None and total is not None and total != expected.size:
        _remove(part)
        raise DownloadError(f"{url} is {total} bytes, not the {expected.size} the catalog expects; nothing "
                            "was kept")
    _check_space(part.parent, (total - offset) if total is not None else 0, label)
    done = offset
    started = time.monotonic()
    mode = "ab" if offset > 0 else "wb"
    try:
        with open(part, mode) as stream:
            if offset == 0:
                stream.truncate(0)
            while True:
                if progress is not None:
                    progress.check()
                try:
                    data = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:
                    raise DownloadError(f"download of {label} stopped after {format_bytes(done)}: "
                                        f"{_reason(error)}; run the same command again to resume",
                                        unreachable=True) from None
                if not data:
                    break
                write_chunk(stream, data)
                done += len(data)
                elapsed = max(time.monotonic() - started, 1e-6)
                rate = (done - offset) / elapsed
                if on_bytes is not None:
                    on_bytes(done, total, rate)
                if progress is not None:
                    fraction = done / total if total else 0.0
                    progress.update(fraction, f"{label}: {format_bytes(done)} of {format_bytes(total)} at "
                                              f"{format_bytes(rate)}/s")
    except (Cancelled, KeyboardInterrupt, DownloadError):
        raise  # the .part stays: the next attempt resumes it
    except OSError as error:
        _remove(part)
        if error.errno == errno.ENOSPC:
            raise DownloadError(f"disk full while downloading {label} into {part.parent}; the partial download "
                                "was deleted") from None
        raise DownloadError(f"cannot write {part} ({error.strerror or error}); the partial download was "
                            "deleted") from None
    if total is not None and done < total:
        raise DownloadError(f"download of {label} stopped after {format_bytes(done)} of {format_bytes(total)} "
                            "(connection closed); run the same command again to resume", unreachable=True)


def space_shortfall(folder: Path, needed: int) -> Optional[str]:
    """``"X needed, Y free in FOLDER"`` when ``folder``'s disk lacks ``needed`` bytes, else None
    (also when the free space cannot be read: the write itself will say)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if needed <= free:
        return None
    return f"{format_bytes(needed)} needed, {format_bytes(free)} free in {folder}"


def _check_space(folder: Path, needed: int, label: str) -> None:
    shortfall = space_shortfall(folder, needed)
    if shortfall:
        raise DownloadError(f"not enough disk space for {label}: {shortfall}")
