"""Where SegmentAI's shipped resources (schemas, built-in models) and the user's data live on this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ModelError

__all__ = ["HOME_ENV", "RESOURCES_ENV", "default_user_dir", "resources_dir"]

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


HOME_ENV = "SEGMENTAI_HOME"
"""Environment variable of SegmentAI's user data folder (models live in its ``models``)."""


def default_user_dir() -> Path:
    """Where imported models go: ``$SEGMENTAI_HOME/models`` or the platform's user data folder."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "models"
    if sys.platform.startswith("win"):
        appdata = os.environ.get("APPDATA")
        base = Path(appdata) if appdata else Path.home() / "AppData" / "Roaming"
        return base / "SegmentAI" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "SegmentAI" / "models"
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "segmentai" / "models"
