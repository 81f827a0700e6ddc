"""``segmentai web`` / ``segmentai-web``: parse the options, build the app, guard it, serve it.

Security (rules in :mod:`.guard`): binds to 127.0.0.1 by default and always has a secret (random at
each start unless one is given); the websocket's hello must present it (compared in constant time)
and ``/`` shows a sign-in form without it. Every HTTP request and websocket upgrade is checked for
its Host (a loopback server answers only to loopback names: no DNS rebinding) and its Origin (another
site's page is refused with 403). ``/segmentai/status`` reports server-side facts (voxel counts, undo
state, dataset size) as JSON for monitoring and tests, behind the same checks and the secret.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import List, Optional

from segmentai_core.errors import SegmentAIError

from .config import WebConfig, is_loopback, parse_config

__all__ = ["main", "build_app", "serve"]

log = logging.getLogger("segmentai.web")

SIGN_IN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>SegmentAI: sign in</title></head>
<body style="font-family: sans-serif; background: #222; color: #eee; display: flex; justify-content: center;
padding-top: 15vh"><form method="get" action="/"><h2>SegmentAI</h2>
<p>This server needs its access token (printed when it started).</p>{error}
<input name="secret" type="password" placeholder="Access token" autofocus style="padding: 6px; width: 260px">
<button type="submit" style="padding: 6px 12px">Open</button></form></body></html>"""


def _routes(server, app, config: WebConfig):
    """Routes added to trame's web server (before its static files, so ``/`` is ours)."""
    from aiohttp import web

    from .guard import request_refusal, tokens_match

    def authorised(request) -> bool:
        return tokens_match(request.query.get("secret"), config.token)

    @web.middleware
    async def caller_check(request, handler):
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if sockname else config.port
        reason = request_refusal(request.headers.get("Host"), request.headers.get("Origin"), config.host, port)
        if reason is not None:
            log.warning("refused %s %s: %s", request.method, request.path, reason)
            return web.Response(text=f"Forbidden: {reason}\n", status=403, content_type="text/plain")
        return await handler(request)

    async def root(request):
        if not authorised(request):
            error = '<p style="color: #f66">Wrong token.</p>' if "secret" in request.query else ""
            return web.Response(text=SIGN_IN_PAGE.format(error=error), content_type="text/html", status=401)
        location = "index.html" + (f"?{request.query_string}" if request.query_string else "")
        raise web.HTTPFound(location)

    async def status(request):
        if not authorised(request):
            return web.json_response({"error": "token required"}, status=401)
        return web.Response(text=json.dumps(app.panel.status()), content_type="application/json")

    async def validate_token(token, client_id=None) -> bool:
        return tokens_match(token, config.token)

    def bind(wslink_server) -> None:
        wslink_server.app.middlewares.append(caller_check)  # before the app is frozen at start
        wslink_server.app.router.add_get("/", root)
        wslink_server.app.router.add_get("/segmentai/status", status)
        protocol = getattr(server, "_root_protocol", None)  # trame's wslink protocol: checks each hello
        if protocol is None:
            raise RuntimeError("trame's protocol is not available: cannot install the token check")
        protocol.validateToken = validate_token
        # wslink records the calling client before each call: uploads are buffered per client.
        app.panel.current_client = lambda: getattr(wslink_server, "last_active_client_id", None)

    return bind


def build_app(config: WebConfig, server=None):
    """The trame server and the SegmentAI app on it (not started)."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # offscreen, no X server needed
    from trame.app import get_server

    from .app import SegmentAIWebApp

    server = server or get_server(None, client_type="vue3")
    app = SegmentAIWebApp(server, config)
    server.controller.on_server_bind.add(_routes(server, app, config))
    if not config.token:
        raise SegmentAIError("the web server needs an access token")  # config_from_args always makes one
    # wslink checks this secret in every client's hello (through validate_token); the page passes it
    # from ?secret=...
    server.cli.set_defaults(authKey=config.token)
    return server, app


def main(argv: Optional[List[str]] = None) -> int:
    """``segmentai-web``: parse ``argv`` and serve until interrupted; returns the exit status."""
    try:
        config = parse_config(argv if argv is not None else sys.argv[1:], prog="segmentai-web")
    except SegmentAIError as error:
        print(f"segmentai-web: error: {error}", file=sys.stderr)
        return 2
    return serve(config)


def serve(config: WebConfig) -> int:
    """Build the app for ``config`` and serve it until interrupted."""
    server, app = build_app(config)

    def ready(**_) -> None:
        config.port = server.port
        print(f"SegmentAI web ready: {config.url}", flush=True)
        if not is_loopback(config.host):
            print("Reachable from other machines: share the address above (with its token) only with its users.",
                  flush=True)

    server.controller.on_server_ready.add(ready)
    sys.argv = sys.argv[:1]  # trame parses sys.argv too: our options are not its options
    try:
        server.start(host=config.host, port=config.port, open_browser=config.open_browser, timeout=0,
                     show_connection_info=False)
    except KeyboardInterrupt:
        pass
    finally:
        app.panel.close()
    return 0
