"""Helpers shared by CLI commands: output checks and model lookup."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OutputError

__all__ = ["check_output_path", "add_model_argument", "resolve_model"]

OUTPUT_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")


def check_output_path(path: Path, overwrite: bool) -> Path:
    """Fail before any work when OUTPUT cannot be written (exists, wrong type, no folder)."""
    from ..io.staging import check_writable_folder

    name = path.name.lower()
    if not name.endswith(OUTPUT_SUFFIXES):
        raise OutputError(f"{path}: unsupported output type; use one of {', '.join(OUTPUT_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it")
    if path.is_symlink() and not path.exists() and not overwrite:
        raise OutputError(f"{path} is a link to a missing file; pass --overwrite to replace the link")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    check_writable_folder(path.parent)
    return path


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, metavar="ID|PATH",
                        help="model id (see 'segmentai models list'), id@version, or a model folder; "
                             "default: the bundled default model")
    add_trust_code_argument(parser)


def add_trust_code_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-code", action="store_true",
                        help="let a TorchScript model (a program, not weights) run for this command only; "
                             "refused otherwise unless trusted with 'segmentai models trust ID'")


def resolve_model(name, trust_code: bool = False):
    """The model package for ``--model`` (the registry's default when None); ``trust_code``: --trust-code."""
    from ..models.registry import ModelRegistry

    registry = ModelRegistry()
    package = registry.default() if name is None else registry.get(name)
    return package.allow_code() if trust_code else package
