"""One writer at a time per dataset: an OS file lock on the dataset folder.

Two ``segmentai dataset add`` into the same (possibly new) dataset would otherwise both see "no
dataset.json", create it with their own labels, and number their cases alike. Everything that
reads and changes a dataset's state (creation, labels, case numbering, ``dataset.json``) runs
under :func:`dataset_lock`, so the second writer sees what the first one wrote.

The lock is ``fcntl.flock`` (``msvcrt.locking`` on Windows) on a hidden file in the dataset
folder. The file is removed when the lock is released, so it never stays in a dataset; a writer
that waited re-checks that the file it locked is still the one at that path (else it locks
again). A failed add into a dataset that did not exist leaves no folder behind.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..errors import OutputError

__all__ = ["LOCK_FILE", "dataset_lock", "locked_dataset_writer"]

LOCK_FILE = ".segmentai-dataset.lock"
DATASET_FOLDERS = ("imagesTr", "labelsTr", "provenance")
_F = TypeVar("_F", bound=Callable)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:  # pragma: no cover - Windows
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue  # LK_LOCK gives up after about 10 s; keep waiting


def _check_folder(folder: Path) -> None:
    from ..io.staging import check_writable_folder

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a dataset folder")
    for name in DATASET_FOLDERS:
        sub = folder / name
        if sub.exists() and not sub.is_dir():
            raise OutputError(f"{sub} is a file where the dataset's {name} folder belongs; move it away")
    check_writable_folder(folder, "dataset")


def _open_locked(folder: Path) -> int:
    path = folder / LOCK_FILE
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputError(f"{folder}: cannot write the dataset there ({error.strerror or error})") from None
        _lock(fd)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder before us removed that file: lock the current one


def _tidy_new_folder(folder: Path, created: bool) -> None:
    """After a failed first add: remove what it created (empty sub-folders, dataset.json, the folder)."""
    if not created:
        return
    if all(not (folder / name).is_dir() or not any((folder / name).iterdir()) for name in DATASET_FOLDERS):
        for name in DATASET_FOLDERS:
            try:
                (folder / name).rmdir()
            except OSError:
                pass
        try:
            (folder / "dataset.json").unlink()
        except OSError:
            pass


@contextmanager
def dataset_lock(folder: Path) -> Iterator[bool]:
    """Hold the dataset's lock (creating the folder if needed); yields whether it had no dataset.json.

    Raises OutputError, before anything is changed, when the folder is a file, one of its
    sub-folders is a file, or nothing can be written there.
    """
    folder = Path(folder)
    _check_folder(folder)
    folder_existed = folder.is_dir()
    fd = _open_locked(folder)
    new = not (folder / "dataset.json").exists()
    failed = True
    try:
        yield new
        failed = False
    finally:
        try:
            if failed:
                _tidy_new_folder(folder, new)
            try:
                os.unlink(folder / LOCK_FILE)
            except OSError:
                pass
        finally:
            os.close(fd)
        if failed and not folder_existed:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass


def locked_dataset_writer(function: _F) -> _F:
    """Decorate a function whose first argument is a dataset folder: it runs under :func:`dataset_lock`."""
    @functools.wraps(function)
    def wrapper(dataset_dir, *args, **kwargs):
        with dataset_lock(Path(dataset_dir)):
            return function(dataset_dir, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
