"""Who may call the web server: its secret, the Host it is reached by and the Origin of the page.

Plain Python (no aiohttp, trame or VTK), so the rules are tested directly; ``server.py`` applies
them to every HTTP request and websocket upgrade, and to the websocket's hello.

* **Secret**: a random one per start, also on loopback (wslink's default secret is public). Tokens
  are compared in constant time.
* **Host**: a server bound to a loopback address answers only to loopback names with its own
  port, so a DNS-rebinding page (``evil.example`` resolving to 127.0.0.1) is refused; a server bound
  to a named address answers to that address (and loopback names). Bound to every interface
  (``0.0.0.0``) any Host is accepted: the secret is what guards it there.
* **Origin**: a browser sends it with every websocket upgrade and cross-site request. When present it
  must be the page's own origin (``http://`` + the Host); another site's page is refused.
"""

from __future__ import annotations

import hmac
from typing import Optional
from urllib.parse import urlsplit

from .config import is_loopback

__all__ = ["LOOPBACK_NAMES", "request_refusal", "tokens_match"]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def tokens_match(given: Optional[str], expected: Optional[str]) -> bool:
    """Constant-time comparison; nothing matches a missing or empty secret."""
    if not given or not expected:
        return False
    return hmac.compare_digest(str(given).encode("utf-8"), str(expected).encode("utf-8"))


def _split_host(value: str) -> "tuple[str, Optional[int]]":
    """``host[:port]`` (``[v6]:port`` too) → (lower-case host, port or None); ('', None) if malformed."""
    parts = urlsplit("//" + value.strip())
    try:
        port = parts.port
    except ValueError:
        return "", None
    return (parts.hostname or "").lower(), port


def _allowed_names(bound_host: str) -> Optional[frozenset]:
    """Host names the server answers to, or None for any (bound to every interface)."""
    if bound_host in ("0.0.0.0", "::", ""):
        return None
    if is_loopback(bound_host):
        return LOOPBACK_NAMES
    return LOOPBACK_NAMES | {bound_host.strip("[]").lower()}


def request_refusal(host_header: Optional[str], origin_header: Optional[str], bound_host: str,
                    port: int) -> Optional[str]:
    """Why a request must be refused (one line), or None when its Host and Origin are acceptable."""
    if not host_header:
        return "missing Host header"
    name, host_port = _split_host(host_header)
    allowed = _allowed_names(bound_host)
    if not name or (allowed is not None and name not in allowed):
        return f"Host '{host_header}' is not this server's address"
    if allowed is not None and host_port not in (port, None if port == 80 else port):
        return f"Host '{host_header}' names another port"
    if origin_header is None:
        return None  # not a browser's cross-site request (curl, urllib, a same-origin navigation)
    origin = urlsplit(origin_header.strip())
    if origin.scheme not in ("http", "https") or not origin.netloc:
        return f"Origin '{origin_header}' is not a web page of this server"
    if origin.netloc.lower() != host_header.strip().lower():
        return f"Origin '{origin_header}' is another site"
    return None
