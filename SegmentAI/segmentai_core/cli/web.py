"""``segmentai web``: a thin dispatcher to the web app (``segmentai_web``).

The core never imports Slicer, VTK or trame: the options come from ``segmentai_web.config`` (plain
Python), and the server (trame, VTK, Slicer's MRML) is imported only when the command runs.
Without the web app installed, the command says how to install it.
"""

from __future__ import annotations

import argparse
import importlib.util

from ..errors import InputError

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "web", help="serve SegmentAI in the browser (slice/3D views, segment editor, clicks, fine-tuning)",
        description="Serve SegmentAI in the browser on trame-slicer. Binds to 127.0.0.1 unless --host is given; "
                    "any other address requires an access token.")
    if importlib.util.find_spec("segmentai_web") is not None:
        from segmentai_web.config import add_arguments  # plain Python: no trame, VTK or Slicer

        add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("segmentai_web") is None or importlib.util.find_spec("trame_slicer") is None:
        raise InputError("the web app is not installed; install it with: pip install 'segmentai[web]'")
    from segmentai_web.config import config_from_args
    from segmentai_web.server import serve

    return int(serve(config_from_args(args)) or 0)
