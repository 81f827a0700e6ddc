"""Entry point of the ``segmentai`` command.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds a parser
whose ``func`` default is ``run(args) -> int``. Packages above the core add their commands the same
way through :data:`COMMAND_PLUGINS` (``segmentai web`` is the web app's): the core names them but
imports nothing of theirs unless they are installed. Errors a user can cause are
:class:`~segmentai_core.errors.SegmentAIError`: they print one line on stderr and exit 2 (130 on
cancel); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from typing import List, Optional

from .. import __version__
from ..errors import SegmentAIError

__all__ = ["main", "console", "build_parser", "dispatch"]

COMMAND_MODULES = ["segment", "models", "sample", "evaluate", "dataset", "refine"]

COMMAND_PLUGINS = ["segmentai_web.command"]
"""Modules outside the core that add a command (each exposes ``register(subparsers)``); looked up
by name when the parser is built and skipped when their package is not installed."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segmentai",
        description="AI-assisted segmentation of CT and MRI volumes (SegmentAI core).",
    )
    parser.add_argument("--version", action="version", version=f"segmentai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as error:
            if error.name == f"{__package__}.{name}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    for name in COMMAND_PLUGINS:
        if _installed(name):
            importlib.import_module(name).register(subparsers)
    return parser


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its package is missing
        return False


def _tolerant_streams() -> None:
    """Never crash on a character the terminal's encoding lacks (e.g. '×' under LANG=C)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def dispatch(parser: argparse.ArgumentParser, argv: Optional[List[str]], interrupted: str) -> int:
    """Parse ``argv`` and run the chosen command with SegmentAI's error rules.

    A :class:`SegmentAIError` prints one line and returns its exit code (``--debug`` adds the
    traceback); Ctrl-C prints ``interrupted`` and returns 130. Shared by ``segmentai-train``.
    """
    _tolerant_streams()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except SegmentAIError as error:
        if args.debug:
            traceback.print_exc()
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: {interrupted}", file=sys.stderr)
        return 130


def main(argv: Optional[List[str]] = None) -> int:
    from ..inference.hugepages import avoid_hugepage_stalls

    # Before the first volume is read: its array copy is the process's first large allocation, and
    # numpy's huge-page advice made that copy of a 150 MB head take 0.36 s instead of 0.06 s.
    avoid_hugepage_stalls()
    try:
        parser = build_parser()  # imports the commands: Ctrl-C can come here too
    except KeyboardInterrupt:
        print("segmentai: interrupted; nothing was written.", file=sys.stderr)
        return 130
    return dispatch(parser, argv, "interrupted; nothing was written.")


def console() -> None:
    """The ``segmentai`` command (and ``python -m segmentai_core.cli.main``): :func:`main`, then an
    exit that skips the interpreter's module teardown (:mod:`.fast_exit`: 0.35 s once PyTorch is in)."""
    from .fast_exit import exit_now

    try:
        code = main()
    except SystemExit as stop:  # argparse's --help, --version and usage errors
        code = stop.code
    exit_now(code)


if __name__ == "__main__":  # pragma: no cover
    console()
