"""``segmentai web``: the web app's own command, added to the core's ``segmentai`` parser.

The core's command line looks this module up by name (``segmentai_core.cli.main.COMMAND_PLUGINS``)
and calls :func:`register` when the web app is installed; the core itself imports nothing of the
web app. The options come from :mod:`.config` (plain Python); the server (trame, VTK, Slicer's MRML)
is imported only when the command runs. Without trame-slicer installed, the command says how to
install it.
"""

from __future__ import annotations

import argparse
import importlib.util

__all__ = ["register", "run"]


def register(subparsers) -> None:
    from .config import add_arguments  # plain Python: no trame, VTK or Slicer

    parser = subparsers.add_parser(
        "web", help="serve SegmentAI in the browser (slice/3D views, segment editor, clicks, fine-tuning)",
        description="Serve SegmentAI in the browser on trame-slicer. Binds to 127.0.0.1 unless --host is given; "
                    "any other address requires an access token.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segmentai_core.errors import InputError

    if importlib.util.find_spec("trame_slicer") is None:
        raise InputError("the web app is not installed; install it with: pip install 'segmentai[web]'")
    from .config import config_from_args
    from .server import serve

    return int(serve(config_from_args(args)) or 0)
