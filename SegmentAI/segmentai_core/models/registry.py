"""Finds model packages: built-in ones shipped in ``Resources/Models`` and user-imported ones.

A registry folder holds one sub-folder per package (``<id>-<version>`` for imported ones).
Packages are named ``id`` (highest version wins) or ``id@version``; a folder path also works.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import List, Optional, Union

from ..errors import ModelError
from ..resources import HOME_ENV, RESOURCES_ENV, default_user_dir, resources_dir
from .manifest import MANIFEST_NAME, version_key
from .package import ModelPackage

__all__ = ["DEFAULT_MODEL_ID", "HOME_ENV", "ModelRegistry", "default_user_dir", "default_builtin_dir"]

DEFAULT_MODEL_ID = "brain-t1-extraction"
"""The built-in model used when the user names none."""

def default_builtin_dir() -> Optional[Path]:
    """``Resources/Models``, or None when this installation ships no Resources folder."""
    if os.environ.get(RESOURCES_ENV):
        return resources_dir() / "Models"  # a wrong override is an error, not "no models"
    try:
        return resources_dir() / "Models"
    except ModelError:
        return None


def _refuse_special(root: Path, path: Path) -> int:
    """``path``'s mode, or ModelError when it is a link or a special file: a link could copy files
    from elsewhere into the registry (``NOTES.txt -> /etc/shadow``), loop or point outside; a FIFO
    would hang the copy."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        raise ModelError(f"{root.name}: {path.relative_to(root)} is a link; model packages may "
                         "hold only regular files and folders")
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise ModelError(f"{root.name}: {path.relative_to(root)} is not a regular file")
    return mode


def _check_plain_tree(folder: Path) -> None:
    """Refuse a package holding links or special files, before anything is created."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            _refuse_special(folder, Path(root) / name)


def _copy_plain_tree(source: Path, destination: Path) -> None:
    """Copy regular files and folders only, each entry checked again as it is copied (the source may
    have changed since :func:`_check_plain_tree`)."""
    destination.mkdir()
    for root, dirs, files in os.walk(source, followlinks=False):
        target = destination / Path(root).relative_to(source)
        for name in dirs + files:
            path = Path(root) / name
            if stat.S_ISDIR(_refuse_special(source, path)):
                (target / name).mkdir()
            else:
                shutil.copy2(path, target / name, follow_symlinks=False)


def _first_missing(folder: Path) -> Optional[Path]:
    """The highest folder of ``folder``'s path that does not exist yet (None when ``folder`` exists)."""
    missing = None
    while not folder.exists() and folder != folder.parent:
        missing, folder = folder, folder.parent
    return missing


def _remove_empty_up_to(folder: Path, top: Optional[Path]) -> None:
    """After a failed import: remove the empty folders it created, from ``folder`` up to ``top``."""
    if top is None:
        return
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return
        folder = folder.parent


def _split_name(name: str) -> "tuple[str, Optional[str]]":
    if "@" in name:
        model_id, version = name.split("@", 1)
        return model_id, version
    return name, None


class ModelRegistry:
    """Built-in plus user model packages. Folders are re-scanned on each call (they are few)."""

    def __init__(self, builtin_dir: Optional[Union[str, Path]] = None, user_dir: Optional[Union[str, Path]] = None):
        self.builtin_dir = Path(builtin_dir) if builtin_dir is not None else default_builtin_dir()
        self.user_dir = Path(user_dir) if user_dir is not None else default_user_dir()

    # --- listing -------------------------------------------------------------------------------

    @staticmethod
    def _scan(folder: Optional[Path], builtin: bool) -> List[ModelPackage]:
        if folder is None or not folder.is_dir():
            return []
        found = []
        for child in sorted(folder.iterdir()):
            # Hidden folders are staging areas of imports and removals in progress.
            if child.name.startswith(".") or not child.is_dir():
                continue
            if not (child / MANIFEST_NAME).exists():
                continue
            found.append(ModelPackage.scan(child, builtin=builtin))
        return found

    def list(self) -> List[ModelPackage]:
        """Every package, built-in first; broken ones are included with ``error`` set."""
        return self._scan(self.builtin_dir, True) + self._scan(self.user_dir, False)

    def builtin(self) -> List[ModelPackage]:
        """Valid built-in packages."""
        return [p for p in self._scan(self.builtin_dir, True) if p.ok]

    def ids(self) -> List[str]:
        """Sorted ids of the valid packages."""
        return sorted({p.id for p in self.list() if p.ok})

    # --- lookup --------------------------------------------------------------------------------

    def get(self, id_or_path: Union[str, Path]) -> ModelPackage:
        """A package by folder path, ``id`` (highest version) or ``id@version``."""
        text = str(id_or_path)
        path = Path(text).expanduser()
        if path.is_dir() and ((path / MANIFEST_NAME).exists() or os.sep in text or "/" in text):
            return ModelPackage.open(path)
        if path.name == MANIFEST_NAME and path.is_file():
            return ModelPackage.open(path.parent)
        if ("/" in text or os.sep in text) and not path.exists():
            raise ModelError(f"model folder {path} does not exist")
        return self._pick(text, [p for p in self.list() if p.ok])

    def installed(self, name: str) -> ModelPackage:
        """An installed package by ``id`` or ``id@version``, never read as a path: what a manifest
        names (a fine-tuned package's parent) resolves only among the registry's own packages."""
        return self._pick(str(name), [p for p in self.list() if p.ok])

    def _pick(self, name: str, packages: List[ModelPackage]) -> ModelPackage:
        model_id, version = _split_name(name)
        same_id = [p for p in packages if p.id == model_id]
        if not same_id:
            available = ", ".join(sorted({p.id for p in packages})) or "none"
            raise ModelError(f"unknown model '{name}' (available: {available}; see 'segmentai models list')")
        if version is not None:
            exact = [p for p in same_id if p.version == version]
            if not exact:
                versions = ", ".join(sorted({p.version for p in same_id}, key=version_key))
                raise ModelError(f"model '{model_id}' has no version {version} (available: {versions})")
            same_id = exact
        # Highest version; on an exact tie a user copy wins over the built-in one.
        return max(same_id, key=lambda p: (version_key(p.version), not p.builtin))

    def default(self) -> ModelPackage:
        """The built-in :data:`DEFAULT_MODEL_ID` (highest version), else the first built-in model."""
        builtin = self.builtin()
        if not builtin:
            raise ModelError(f"no built-in model found in {self.builtin_dir}; name a model with --model")
        if any(p.id == DEFAULT_MODEL_ID for p in builtin):
            return self._pick(DEFAULT_MODEL_ID, builtin)
        return builtin[0]

    # --- changes -------------------------------------------------------------------------------

    def import_package(self, path: Union[str, Path]) -> ModelPackage:
        """Validate and verify the package at ``path``, then copy it into the user folder.

        ``path`` may also be an nnU-Net v2 model folder or a MONAI bundle: it is converted first
        (see :mod:`segmentai_core.importers`).

        The copy lands in ``<user_dir>/<id>-<version>`` whole or not at all. A package whose
        ``id@version`` is installed already is refused.
        """
        source_path = Path(path).expanduser()
        if source_path.name == MANIFEST_NAME and source_path.is_file():
            source_path = source_path.parent
        if source_path.is_file() and source_path.name.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz")):
            raise ModelError(f"{source_path} is an archive, not a model folder: unpack it and import the folder")
        if source_path.exists() and not source_path.is_dir():
            raise ModelError(f"{source_path} is a file, not a model folder (a folder with manifest.json, "
                             "an nnU-Net model folder or a MONAI bundle)")
        if source_path.is_dir() and not (source_path / MANIFEST_NAME).exists():
            return self._import_foreign(source_path)
        source = ModelPackage.open(source_path)
        _check_plain_tree(source.folder)
        source.check_loadable()  # the same safe-load check as segmenting: refused here, not later
        manifest = source.manifest
        for existing in self.list():
            if existing.ok and existing.full_id == manifest.full_id:
                raise ModelError(
                    f"model {manifest.full_id} is installed already ({existing.source}, {existing.folder}); "
                    "remove it first or give the new one a higher version"
                )
        destination = self.user_dir / f"{manifest.id}-{manifest.version}"
        if destination.exists():
            raise ModelError(f"{destination} exists already; remove it first ('segmentai models remove')")
        created = _first_missing(self.user_dir)
        staging = None
        try:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".import-{manifest.id}-", dir=self.user_dir))
            copied = staging / "package"
            _copy_plain_tree(source.folder, copied)
            ModelPackage.open(copied).verify()  # the copy, not only the source, must be intact
            os.replace(copied, destination)
        except OSError as error:  # a full disk, a read-only home
            raise ModelError(f"cannot import {manifest.full_id} into {self.user_dir} "
                             f"({error.strerror or error}); nothing was installed") from None
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if not destination.exists():
                _remove_empty_up_to(self.user_dir, created)  # no empty models/ folder left behind
        return ModelPackage.open(destination)

    def _import_foreign(self, source_path: Path) -> ModelPackage:
        """An nnU-Net v2 folder or MONAI bundle: convert it to a package in a staging folder, then import."""
        from ..importers import convert_model

        created = _first_missing(self.user_dir)
        try:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=self.user_dir))
        except OSError as error:
            raise ModelError(f"cannot import into {self.user_dir} ({error.strerror or error}); nothing was "
                             "installed") from None
        try:
            package = convert_model(source_path, staging / "package")
            return self.import_package(package.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_empty_up_to(self.user_dir, created)  # only when the import failed and left it empty

    def remove(self, id_or_version: str) -> ModelPackage:
        """Delete a user package named ``id`` (if only one version is installed) or ``id@version``.

        Built-in packages cannot be removed. A broken user package can be removed by its folder name.
        """
        user = self._scan(self.user_dir, False)
        model_id, version = _split_name(id_or_version)
        matches = [p for p in user if p.ok and p.id == model_id and version in (None, p.version)]
        if not matches:
            broken = [p for p in user if not p.ok and p.folder.name == id_or_version]
            if broken:
                matches = broken
            elif any(p.id == model_id and version in (None, p.version) for p in self.builtin()):
                raise ModelError(f"'{id_or_version}' is a built-in model and cannot be removed")
            else:
                available = ", ".join(p.full_id if p.ok else p.folder.name for p in user) or "none"
                raise ModelError(f"no user model '{id_or_version}' to remove (user models: {available})")
        if len(matches) > 1:
            versions = ", ".join(sorted((p.version for p in matches), key=version_key))
            raise ModelError(
                f"several versions of '{model_id}' are installed ({versions}): name one as {model_id}@VERSION"
            )
        package = matches[0]
        # Rename first so that a half-deleted folder never looks like a package.
        trash = Path(tempfile.mkdtemp(prefix=".remove-", dir=self.user_dir))
        os.replace(package.folder, trash / "package")
        shutil.rmtree(trash, ignore_errors=True)
        return package
