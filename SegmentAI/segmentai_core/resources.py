"""Where SegmentAI's shipped resources (schemas, built-in models) live on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError

__all__ = ["resources_dir", "RESOURCES_ENV"]

RESOURCES_ENV = "SEGMENTAI_RESOURCES"
"""Environment variable that overrides the Resources folder (tests, custom installs)."""


def resources_dir() -> Path:
    """The top-level ``Resources`` folder.

    ``$SEGMENTAI_RESOURCES`` if set; otherwise ``<repo>/Resources`` (source checkout or editable
    install: this file is ``<repo>/SegmentAI/segmentai_core/resources.py``) or
    ``<module>/Resources`` (Slicer's installed layout puts the package beside Resources).
    """
    override = os.environ.get(RESOURCES_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise ModelError(f"{RESOURCES_ENV} points to {path}, which is not a folder")
        return path
    here = Path(__file__).resolve()
    # Source checkout / editable install, Slicer's installed layout, then a wheel install.
    candidates = [here.parents[2] / "Resources", here.parents[1] / "Resources", here.parent / "_resources"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ModelError(
        "SegmentAI's Resources folder was not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + f"); set {RESOURCES_ENV} to its path"
    )
