"""Files the page may open: uploads (size limit, content sniffing) and images under ``--data``.

An upload is checked before anything in the scene changes: a file that is too large, has an
unknown suffix, or whose bytes are not the image format its name claims is refused with one
readable line. Server-side files are opened by a name relative to ``--data`` and never outside it.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from segmentai_core.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "UploadBuffers", "check_upload", "image_suffix", "list_data_images", "resolve_data_path",
           "write_upload"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
"""Single-file volume formats the page accepts (detached headers need two files: not uploadable)."""


def image_suffix(name: str) -> Optional[str]:
    """The accepted image suffix ``name`` ends with, or None (``.seg.nrrd`` is a segmentation, not an image)."""
    lower = name.lower()
    if lower.endswith(".seg.nrrd"):
        return None
    return next((s for s in IMAGE_SUFFIXES if lower.endswith(s)), None)


def _looks_like(suffix: str, head: bytes) -> bool:
    """True when the first bytes match the format ``suffix`` names."""
    if suffix == ".nii.gz":
        if head[:2] != b"\x1f\x8b":
            return False
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(548)
        except (OSError, EOFError):
            return False
        suffix = ".nii"
    if suffix == ".nii":
        return head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00", b"ni2\x00")
    if suffix == ".nrrd":
        return head.startswith(b"NRRD000")
    if suffix == ".mha":
        text = head[:2048].decode("latin-1", "replace")
        return "NDims" in text and "ElementDataFile" in text and "LOCAL" in text
    return False


def check_upload(name: str, data: bytes, max_bytes: int) -> str:
    """Check one uploaded file; returns its suffix or raises InputError naming the file."""
    name = Path(str(name or "upload")).name
    if len(data) > max_bytes:
        raise InputError(f"{name} is {len(data) / 2**20:.1f} MB; this server accepts up to {max_bytes / 2**20:.0f} MB")
    suffix = image_suffix(name)
    if suffix is None:
        raise InputError(f"{name} is not an image this page opens (use {', '.join(IMAGE_SUFFIXES)})")
    if not _looks_like(suffix, bytes(data[:65536])):
        raise InputError(f"{name} is not a {suffix} image (its content does not match its name)")
    return suffix


def write_upload(name: str, data: bytes, folder: Path) -> Path:
    """Write checked upload bytes into ``folder`` under a safe name (no path parts kept)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(str(name)).name) or "upload"
    path = Path(folder) / safe
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def list_data_images(data_dir: Optional[Path], limit: int = 500) -> List[str]:
    """Image files under ``data_dir`` (relative POSIX paths, sorted), at most ``limit``."""
    if data_dir is None:
        return []
    found: List[str] = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if image_suffix(name):
                found.append(Path(root, name).relative_to(data_dir).as_posix())
                if len(found) >= limit:
                    return found
    return found


def resolve_data_path(data_dir: Optional[Path], relative: str) -> Path:
    """``data_dir / relative`` if it is an image file inside ``data_dir`` (links resolved), else InputError."""
    if data_dir is None:
        raise InputError("this server was started without --data: no server-side files can be opened")
    root = Path(data_dir).resolve()
    path = (root / str(relative)).resolve()
    if root != path and root not in path.parents:
        raise InputError(f"{relative} is outside the data folder")
    if not path.is_file() or image_suffix(path.name) is None:
        raise InputError(f"{relative}: no such image in the data folder")
    return path


def _content_bytes(item) -> bytes:
    """The bytes of one file dictionary from trame's file input (InputError when malformed)."""
    if not isinstance(item, dict):
        raise InputError("malformed upload (not a file)")
    content = item.get("content", b"")
    parts = content if isinstance(content, list) else [content]  # large files arrive in parts
    if not all(isinstance(p, (bytes, bytearray, memoryview)) for p in parts):
        raise InputError("malformed upload (the file's content is not bytes)")
    return b"".join(bytes(p) for p in parts)


class UploadBuffers:
    """Uploads in progress, one buffer per client; the size limit is enforced as chunks arrive.

    A malformed or oversized chunk drops that client's buffer at once (and raises InputError), so
    one bad upload never holds memory or blocks later uploads of that client or any other.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._files: Dict[object, List[Tuple[str, bytes]]] = {}
        self._sizes: Dict[object, int] = {}

    def add(self, client, files: Sequence[dict]) -> None:
        try:
            if not isinstance(files, (list, tuple)):
                raise InputError("malformed upload (not a list of files)")
            for item in files:
                data = _content_bytes(item)
                name = Path(str(item.get("name") or "upload")).name
                size = self._sizes.get(client, 0) + len(data)
                if size > self.max_bytes:
                    raise InputError(f"{name}: the upload is larger than this server accepts "
                                     f"({self.max_bytes / 2**20:.0f} MB)")
                self._sizes[client] = size
                self._files.setdefault(client, []).append((name, data))
        except BaseException:
            self.drop(client)
            raise

    def finish(self, client) -> List[Tuple[str, bytes]]:
        """The client's files, removing its buffer."""
        self._sizes.pop(client, None)
        return self._files.pop(client, [])

    def drop(self, client) -> None:
        self._sizes.pop(client, None)
        self._files.pop(client, None)

    def pending_bytes(self) -> int:
        return sum(self._sizes.values())
