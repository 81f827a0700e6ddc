"""Options of ``segmentai web`` and the rules that keep it safe to run (no trame, no VTK here).

The server binds to 127.0.0.1 unless told otherwise, and always has an access token: the one given
(``--token`` or ``$SEGMENTAI_WEB_TOKEN``), else a random one made at each start, also on loopback
(another web page in the same browser could otherwise drive a loopback server). The browser
presents it (``?secret=TOKEN`` in the printed address, or typed into the page's sign-in form)
before the websocket accepts it; Host and Origin are checked too (:mod:`.guard`). Uploads are
limited in size.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional
from urllib.parse import quote

from segmentai_core.errors import InputError
from segmentai_core.inference.precision import PRECISIONS

__all__ = ["WebConfig", "add_arguments", "config_from_args", "is_loopback", "TOKEN_ENV"]

TOKEN_ENV = "SEGMENTAI_WEB_TOKEN"
"""Environment variable holding the access token (preferred over ``--token``: not shown by ``ps``)."""

DEFAULT_MAX_UPLOAD_MB = 1024


@dataclass
class WebConfig:
    """Everything the web app needs from the command line."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Optional[Path] = None
    dataset_dir: Optional[Path] = None
    runs_dir: Optional[Path] = None
    token: Optional[str] = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    device: str = "auto"
    precision: str = "float32"
    open_browser: bool = False

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        query = f"?secret={quote(self.token, safe='')}" if self.token else ""
        return f"http://{shown}:{self.port}/{query}"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``segmentai web`` (shared by ``segmentai-web``)."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, reachable from this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="folder whose images the page may open by name (nothing outside it)")
    parser.add_argument("--dataset", type=Path, default=None, metavar="DIR",
                        help="training dataset that 'Save as training case' adds to "
                             "(default: DATA/segmentai-dataset, else the user data folder)")
    parser.add_argument("--runs", type=Path, default=None, metavar="DIR",
                        help="folder of fine-tuning runs (default: beside the dataset)")
    parser.add_argument("--token", default=None,
                        help=f"access token (default: ${TOKEN_ENV}, else a random one made at each start)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest accepted upload in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--precision", default="float32", choices=PRECISIONS,
                        help="the network's arithmetic for Segment (default float32; bfloat16 is faster on CPUs "
                             "with AMX or AVX-512 BF16 and on GPUs, not bit-equal)")
    parser.add_argument("--open-browser", action="store_true", help="open the page in a browser")


def _default_dataset(data_dir: Optional[Path]) -> Path:
    if data_dir is not None:
        return data_dir / "segmentai-dataset"
    from segmentai_core.models.registry import default_user_dir

    return default_user_dir().parent / "datasets" / "web-corrections"


def config_from_args(args: argparse.Namespace, environ: Optional[dict] = None) -> WebConfig:
    """Check the options and build the configuration (raises InputError with one readable line)."""
    environ = os.environ if environ is None else environ
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a port number (0..65535)")
    if args.max_upload_mb <= 0:
        raise InputError("--max-upload-mb must be positive")
    data_dir = args.data.expanduser().resolve() if args.data is not None else None
    if data_dir is not None and not data_dir.is_dir():
        raise InputError(f"--data {args.data}: no such folder")
    token = args.token if args.token is not None else environ.get(TOKEN_ENV)
    if token is not None:
        if not token.strip():
            raise InputError("the access token must not be empty or spaces only")
        if token != token.strip() or len(token) < 8:
            raise InputError("the access token must have at least 8 characters and no surrounding spaces")
    else:
        token = secrets.token_urlsafe(18)  # never wslink's public default, on loopback too
    dataset = (args.dataset.expanduser().resolve() if args.dataset is not None else _default_dataset(data_dir))
    runs = args.runs.expanduser().resolve() if args.runs is not None else dataset.parent / "segmentai-runs"
    return WebConfig(host=args.host, port=args.port, data_dir=data_dir, dataset_dir=dataset, runs_dir=runs,
                     token=token, max_upload_mb=args.max_upload_mb, device=args.device, precision=args.precision,
                     open_browser=args.open_browser)


def parse_config(argv: Optional[List[str]] = None, prog: str = "segmentai web") -> WebConfig:
    """Parse ``argv`` into a :class:`WebConfig` (for ``segmentai-web`` and tests)."""
    parser = argparse.ArgumentParser(prog=prog, description="Serve SegmentAI in the browser (trame-slicer).")
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))
