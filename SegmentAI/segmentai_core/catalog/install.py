"""Install a catalog model: download → verify → unpack in a staging folder → import → into the registry.

Each part of the entry is downloaded (or taken from a file the user downloaded elsewhere),
checked against the catalog's size and hashes, unpacked with :func:`.unpack.unpack_archive` into a
hidden staging folder inside the registry's user folder, converted by the model's importer
(nnU-Net v2 or MONAI bundle: weights read without running pickled code) and then handed to
:meth:`ModelRegistry.import_package`, which re-checks the package (no links, weights load safely)
and renames it into place. Nothing is half-installed: a failure, a full disk, Cancel or Ctrl-C
removes the staging folder and every part this install had already added. Only an interrupted
*download* keeps its ``.part`` file (in ``<SegmentAI home>/downloads``), so the next attempt resumes it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..errors import ModelError
from ..progress import Progress
from .catalog import Catalog, CatalogEntry, CatalogPart, load_catalog
from .download import ByteCallback, DownloadError, Expected, download, format_bytes, verify_file
from .unpack import unpack_archive

__all__ = ["InstallResult", "available_models", "describe_size", "download_dir", "find_model_folder",
           "install_model", "installed_parts", "remove_model"]

Say = Callable[[str], None]


@dataclass
class InstallResult:
    entry: CatalogEntry
    packages: List[Any] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def download_dir(registry: Any) -> Path:
    """``<SegmentAI home>/downloads``: beside the registry's user ``models`` folder."""
    return Path(registry.user_dir).parent / "downloads"


def installed_parts(entry: CatalogEntry, registry: Any) -> Dict[str, Any]:
    """Package id → installed package, for the entry's parts that are in the registry."""
    wanted = set(entry.package_ids)
    return {p.id: p for p in registry.list() if p.ok and p.id in wanted}


def _state(entry: CatalogEntry, registry: Any) -> str:
    count = len(installed_parts(entry, registry))
    if count == 0:
        return "no"
    if count == len(entry.parts):
        return "yes"
    return f"{count}/{len(entry.parts)} parts"


def available_models(registry: Any, catalog: Optional[Catalog] = None) -> List[Dict[str, Any]]:
    """One row per catalog entry, with whether (and which parts) it is installed."""
    catalog = catalog or load_catalog()
    rows = []
    for entry in catalog:
        rows.append({
            "id": entry.id, "title": entry.title, "provider": entry.provider, "version": entry.version,
            "task": entry.task, "modality": entry.modality, "classes": entry.class_count,
            "parts": [{"name": p.name, "package": entry.package_id(p), "url": p.url, "size_bytes": p.size_bytes,
                       "sha256": p.sha256, "sha1": p.sha1} for p in entry.parts],
            "size_bytes": entry.size_bytes, "license": entry.license.get("weights"),
            "commercial_use": entry.license.get("commercial_use"), "importer": entry.importer,
            "architecture": entry.architecture, "supported": entry.architecture_problem() is None,
            "multi_label": entry.multi_label,
            "installed": _state(entry, registry), "packages": entry.package_ids, "citation": entry.citation,
        })
    return rows


def find_model_folder(root: Path, entry: CatalogEntry, part: CatalogPart, max_depth: int = 5) -> Path:
    """The one nnU-Net v2 result folder or MONAI bundle inside the unpacked archive."""
    from ..importers.monai_bundle import is_monai_bundle
    from ..importers.nnunet import is_nnunet_folder

    check = is_nnunet_folder if entry.importer == "nnunet" else is_monai_bundle
    kind = "nnU-Net v2 model folder (dataset.json, plans.json, fold_*)" if entry.importer == "nnunet" \
        else "MONAI bundle (configs/metadata.json)"
    found: List[Path] = []
    for folder, dirs, _files in os.walk(root, followlinks=False):
        path = Path(folder)
        depth = len(path.relative_to(root).parts)
        if check(path):
            found.append(path)
            dirs[:] = []  # a model folder's own sub-folders are not other models
        elif depth >= max_depth:
            dirs[:] = []
        dirs.sort()
    if len(found) > 1 and part.folder:
        found = [f for f in found if part.folder in f.relative_to(root).parts] or found
    if len(found) > 1:
        fullres = [f for f in found if f.name.endswith("__3d_fullres")]
        found = fullres if len(fullres) == 1 else found
    if not found:
        raise ModelError(f"{part.file_name} holds no {kind}; is it the archive of '{entry.id}'?")
    if len(found) > 1:
        names = ", ".join(str(f.relative_to(root)) for f in found[:4])
        raise ModelError(f"{part.file_name} holds several models ({names}); SegmentAI expects one per archive")
    return found[0]


def _expected(part: CatalogPart) -> Expected:
    return Expected(size=part.size_bytes, sha256=part.sha256, sha1=part.sha1)


def _match_files(entry: CatalogEntry, files: Sequence[Path]) -> Dict[str, Path]:
    """Part name → the user's file: by the archive's file name, then in the catalog's order."""
    files = [Path(f).expanduser() for f in files]
    for path in files:
        if not path.is_file():
            raise ModelError(f"{path} is not a file (give the archive you downloaded)")
    if len(files) > len(entry.parts):
        raise ModelError(f"'{entry.id}' has {len(entry.parts)} part(s) but {len(files)} files were given")
    matched: Dict[str, Path] = {}
    rest = list(files)
    for part in entry.parts:
        same = next((f for f in rest if f.name == part.file_name), None)
        if same is not None:
            matched[part.name] = same
            rest.remove(same)
    for part in entry.parts:
        if part.name not in matched and rest:
            matched[part.name] = rest.pop(0)
    return matched


def _verification_note(entry: CatalogEntry, part: CatalogPart) -> Optional[str]:
    what = entry.package_id(part)
    if part.sha256:
        return None
    if part.sha1:
        return f"{what}: the provider publishes a SHA-1 only, which was checked (no SHA-256 is known)"
    if part.size_bytes is not None:
        return f"{what}: no hash is known for this archive; only its size was checked"
    return (f"{what}: neither size nor hash of this archive is known; it could not be verified (the importer "
            "still checks its contents)")


def _offline_hint(entry: CatalogEntry, part: CatalogPart) -> str:
    files = " ".join(f"--from-file {p.file_name}" for p in entry.parts)
    return (f"; download the file on a machine that is online and run 'segmentai models install {entry.id} "
            f"{files}'; nothing was installed")


def install_model(model: Union[str, CatalogEntry], registry: Any = None, catalog: Optional[Catalog] = None,
                  files: Sequence[Union[str, Path]] = (), progress: Optional[Progress] = None,
                  on_bytes: Optional[ByteCallback] = None, say: Optional[Say] = None,
                  timeout_s: float = 30.0) -> InstallResult:
    """Install the catalog model ``model`` (an id or entry) into ``registry`` (the default one if None).

    ``files`` are archives the user already has (``--from-file``), checked like downloads. ``say``
    receives notes meant for the user (what could not be verified). Raises ModelError (one line),
    or Cancelled; either way nothing of this install is left in the registry.
    """
    from ..models.registry import ModelRegistry

    registry = registry or ModelRegistry()
    catalog = catalog or load_catalog()
    entry = model if isinstance(model, CatalogEntry) else catalog.get(model)
    progress = progress or Progress()
    say = say or (lambda text: None)
    result = InstallResult(entry)

    problem = entry.architecture_problem()
    if problem is not None:
        raise ModelError(problem)
    present = installed_parts(entry, registry)
    if present:
        names = ", ".join(f"{p.full_id}" for p in present.values())
        raise ModelError(f"'{entry.id}' is installed already ({names}); remove it first ('segmentai models remove "
                         f"{entry.id}')")
    given = _match_files(entry, files)
    for part in entry.parts:
        note = _verification_note(entry, part)
        if note is not None:
            result.notes.append(note)
            say(note)

    from ..models.registry import _first_missing, _remove_empty_up_to

    user_dir = Path(registry.user_dir)
    downloads = download_dir(registry)
    created = [(folder, _first_missing(folder)) for folder in (downloads, user_dir)]  # removed again if empty
    staging: Optional[Path] = None
    imported: List[Any] = []
    fetched: List[Path] = []
    folders: List[Path] = []
    count = len(entry.parts)
    try:
        user_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".install-{entry.id}-", dir=user_dir))
        converted = []
        for index, part in enumerate(entry.parts):
            step = progress.span(index / count, (index + 1) / count)
            package_id = entry.package_id(part)
            archive = given.get(part.name)
            if archive is not None:
                verify_file(archive, _expected(part), f"{archive.name} (given for {package_id})")
            else:
                target = downloads / f"{entry.id}-{entry.version}" / part.file_name
                folders.append(target.parent)
                try:
                    archive = download(part.url, target, _expected(part), step.span(0.0, 0.7), on_bytes,
                                       timeout_s=timeout_s, label=f"{package_id} ({part.file_name})")
                except DownloadError as error:
                    hint = _offline_hint(entry, part) if error.unreachable else "; nothing was installed"
                    raise ModelError(f"{error}{hint}") from None
                fetched.append(archive)
            raw = unpack_archive(archive, staging / f"{index}-raw", step.span(0.7, 0.8))
            folder = find_model_folder(raw, entry, part)
            step.update(0.8, f"Importing {package_id}")
            package = _with_catalog_styles(entry, _convert(entry, folder, staging / f"{index}-package", package_id))
            shutil.rmtree(raw, ignore_errors=True)  # the disk it held is needed by the next part
            converted.append(package)
            step.update(0.9, f"Converted {package_id}")
        progress.check()  # last chance to cancel before the registry changes
        for package in converted:
            imported.append(registry.import_package(package.folder))
        result.packages = imported
        progress.update(1.0, f"Installed {entry.id}")
        return result
    except BaseException as error:
        for package in reversed(imported):  # the parts already in place go again: all or nothing
            try:
                registry.remove(package.full_id)
            except Exception:  # noqa: BLE001 - keep undoing the rest; the original error is what matters
                pass
        if isinstance(error, OSError):
            reason = "disk full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
            raise ModelError(f"cannot install {entry.id} into {user_dir} ({reason}); nothing was installed") from None
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for path in fetched:  # a verified archive is not needed once imported (or refused)
            _unlink(path)
        for folder in folders + [downloads]:  # empty unless a .part waits to be resumed
            _rmdir(folder)
        for folder, top in created:
            _remove_empty_up_to(folder, top)


def _convert(entry: CatalogEntry, folder: Path, destination: Path, package_id: str):
    if entry.importer == "nnunet":
        from ..importers.nnunet import convert_nnunet

        # The provider's own step (TotalSegmentator: 0.8) and resampling give its tool's answer; nnU-Net's
        # defaults otherwise.
        options = {"step_size": entry.step_size} if entry.step_size is not None else {}
        return convert_nnunet(folder, destination, model_id=package_id, version=entry.version,
                              resample_mm=entry.resample_mm, **options)
    from ..importers.monai_bundle import convert_monai_bundle

    return convert_monai_bundle(folder, destination, model_id=package_id, version=entry.version)


def _with_catalog_styles(entry: CatalogEntry, package: Any) -> Any:
    """The converted package with the catalog's colours and terminology (SNOMED CT codes) on the labels of
    the same name; the weights and their hash are untouched."""
    from ..io.staging import write_json_atomic
    from ..models.manifest import MANIFEST_NAME
    from ..models.package import ModelPackage

    if not entry.segments:
        return package
    path = Path(package.folder) / MANIFEST_NAME
    manifest = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for label in manifest.get("labels", {}).values():
        style = entry.style_of(label.get("name", ""))
        if style is None:
            continue
        if "color" in style:
            label["color"] = list(style["color"])
        if "terminology" in style:
            label["terminology"] = style["terminology"]
        changed = True
    if not changed:
        return package
    write_json_atomic(path, manifest)
    return ModelPackage.open(package.folder)  # validated again


def remove_model(model_id: str, registry: Any = None, catalog: Optional[Catalog] = None) -> List[Any]:
    """Remove every installed part of the catalog model ``model_id``; returns the removed packages."""
    from ..models.registry import ModelRegistry

    registry = registry or ModelRegistry()
    catalog = catalog or load_catalog()
    entry = catalog.get(model_id)
    present = installed_parts(entry, registry)
    if not present:
        raise ModelError(f"'{entry.id}' is not installed (see 'segmentai models available')")
    return [registry.remove(package.full_id) for package in present.values()]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def describe_size(entry: CatalogEntry) -> str:
    """``1.2 GB``, or ``unknown`` when a part's size is not in the catalog."""
    return format_bytes(entry.size_bytes) if entry.size_bytes is not None else "unknown"
