"""Reading and writing nodes through Slicer's storage nodes (``.seg.nrrd``, ``.nrrd``, ``.nii.gz``, ...).

Writes are atomic: the storage node writes a temporary file in the target folder, which then
replaces the target, so a failed save never leaves a half-written file. Reads check that the file
holds all the voxels its header promises (the core's file checks) before Slicer parses it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union

from segmentai_core.errors import InputError, OutputError
from segmentai_core.io.file_checks import check_complete

__all__ = ["load_segmentation", "load_volume", "save_node"]

PathLike = Union[str, Path]

_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd", ".mrk.json", ".json")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in _SUFFIXES if name.endswith(s)), path.suffix)


def save_node(node, path: PathLike, overwrite: bool = True) -> Path:
    """Write ``node`` to ``path`` with its (default) storage node; returns the path written."""
    path = Path(path).expanduser().resolve()
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists already")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {path.parent} does not exist")
    storage = node.GetStorageNode()
    if storage is None:
        storage = node.CreateDefaultStorageNode()
        if storage is None:
            raise OutputError(f"{path}: nodes of type {node.GetClassName()} cannot be saved")
        node.GetScene().AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_suffix(path), dir=path.parent)
    os.close(handle)
    try:
        storage.SetFileName(temp)
        if not storage.WriteData(node):
            raise OutputError(f"{path}: Slicer could not write {node.GetName()}")
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
        storage.SetFileName(str(path))
    return path


def _read(scene, path: PathLike, node_class: str, storage_class: str, name: Optional[str]):
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    check_complete(path)
    node = scene.AddNewNodeByClass(node_class, name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass(storage_class)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise InputError(f"{path}: Slicer could not read it as {node_class[7:]}")
    node.CreateDefaultDisplayNodes()
    return node


def load_segmentation(scene, path: PathLike, name: Optional[str] = None):
    """Load a ``.seg.nrrd`` (or label map) file into a new segmentation node of ``scene``."""
    return _read(scene, path, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", name)


def load_volume(scene, path: PathLike, name: Optional[str] = None):
    """Load a scalar volume file (NRRD, NIfTI, MetaImage) into a new scalar volume node of ``scene``."""
    return _read(scene, path, "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", name)
