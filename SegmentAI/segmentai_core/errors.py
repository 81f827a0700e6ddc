"""Exceptions that carry a message meant for the user.

Every error that a user can cause (bad file, bad model, bad option) is raised as a subclass of
:class:`SegmentAIError` with a one-line, readable message. The CLI prints that line and exits
with code 2; the Slicer module shows it in one dialog. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

__all__ = [
    "SegmentAIError",
    "InputError",
    "ModelError",
    "OutputError",
    "ResourceError",
    "Cancelled",
]


class SegmentAIError(Exception):
    """Base class of errors whose message is shown to the user as is."""

    exit_code = 2


class InputError(SegmentAIError):
    """The input image, mask or option cannot be used."""


class ModelError(SegmentAIError):
    """A model package is missing, malformed, tampered with or unsafe."""


class OutputError(SegmentAIError):
    """The output cannot be written (exists already, bad extension, not writable)."""


class ResourceError(SegmentAIError):
    """The job does not fit the memory budget or the requested device is unavailable."""


class Cancelled(SegmentAIError):
    """The user cancelled the job; nothing was written."""

    exit_code = 130
