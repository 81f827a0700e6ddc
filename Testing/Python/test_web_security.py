"""The web server on its default settings refuses other web pages: secret, Origin, Host, model ids.

A real ``segmentai web`` child process on 127.0.0.1 with no token given (so its secret is the random
per-start one), driven by a raw websocket client speaking wslink's protocol (msgpack in chunks), as
a hostile page or a DNS-rebinding attacker would. No browser is needed; trame-slicer and EGL are.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from web_harness import WebServer, server_env, skip_unless_ready  # noqa: E402


pytestmark = skip_unless_ready("web security tests", [("trame_slicer", "trame-slicer")], browser=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("websec")
    env = server_env(tmp)
    env.pop("SEGMENTAI_WEB_TOKEN", None)  # the default: a random secret per start
    running = WebServer(tmp, ["--dataset", str(tmp / "dataset")], env)
    try:
        yield {"base": running.url, "port": running.port, "secret": running.secret}
    finally:
        running.stop()


def _get(url: str, headers=None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_secret_is_random_even_on_loopback(server):
    assert len(server["secret"]) >= 16 and server["secret"] != "wslink-secret"


def test_status_needs_the_secret_and_the_right_host(server):
    base, secret = server["base"], server["secret"]
    assert _get(f"{base}segmentai/status") == 401
    assert _get(f"{base}segmentai/status?secret=wslink-secret") == 401
    assert _get(f"{base}segmentai/status?secret={secret}") == 200
    port = server["port"]
    assert _get(f"{base}segmentai/status?secret={secret}", {"Host": f"evil.example:{port}"}) == 403  # rebinding
    assert _get(f"{base}segmentai/status?secret={secret}", {"Origin": "http://evil.example"}) == 403
    assert _get(f"{base}index.html", {"Host": f"evil.example:{port}"}) == 403
    assert _get(f"{base}?secret=wrong") == 401  # the sign-in page, not the app


# --- a raw wslink client -----------------------------------------------------------------------

async def _exchange(server, origin, secret, then=None, listen_s=0.0):
    """Connect with ``origin``, say hello with ``secret``; returns (upgrade status, hello reply, pushed)."""
    import aiohttp
    import msgpack
    from wslink.chunking import HEADER_LENGTH, generate_chunks

    def pack(message):
        return list(generate_chunks(msgpack.packb(message), 0))

    def unpack(data):
        return msgpack.unpackb(data[HEADER_LENGTH:], strict_map_key=False)

    ws_url = server["base"].replace("http://", "ws://") + "ws"
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(ws_url, headers={"Origin": origin})
        except aiohttp.WSServerHandshakeError as error:
            return error.status, None, []
        async with ws:
            for chunk in pack({"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello",
                               "args": [{"secret": secret}], "kwargs": {}}):
                await ws.send_bytes(chunk)
            reply = unpack((await ws.receive(timeout=20)).data)
            pushed = []
            if then:
                for number, (method, args) in enumerate(then, start=1):
                    for chunk in pack({"wslink": "1.0", "id": f"rpc:c0:{number}", "method": method,
                                       "args": args, "kwargs": {}}):
                        await ws.send_bytes(chunk)
                deadline = time.time() + listen_s
                while time.time() < deadline:
                    try:
                        message = await ws.receive(timeout=max(0.1, deadline - time.time()))
                    except asyncio.TimeoutError:
                        break
                    if message.type == aiohttp.WSMsgType.BINARY:
                        pushed.append(unpack(message.data))
            return 101, reply, pushed


def _run(coroutine):
    return asyncio.new_event_loop().run_until_complete(coroutine)


def test_other_origins_cannot_open_the_websocket(server):
    status, reply, _ = _run(_exchange(server, "http://evil.example", server["secret"]))
    assert status == 403 and reply is None


def test_the_public_default_secret_is_not_accepted(server):
    own = f"http://127.0.0.1:{server['port']}"
    status, reply, _ = _run(_exchange(server, own, "wslink-secret"))
    assert status == 101 and "clientID" not in str(reply.get("result"))
    status, reply, _ = _run(_exchange(server, own, server["secret"]))
    assert status == 101 and "clientID" in reply["result"]


def test_a_client_cannot_load_a_model_folder_by_path(server):
    """sai_model set to a server path must not reach the registry (nor reveal whether it exists)."""
    own = f"http://127.0.0.1:{server['port']}"
    calls = [("trame.state.update", [[{"key": "sai_model", "value": "/etc"}]])]
    status, reply, pushed = _run(_exchange(server, own, server["secret"], then=calls, listen_s=3.0))
    assert status == 101 and "clientID" in reply["result"]
    text = str(pushed)
    assert "is not a model package" not in text and "does not exist" not in text
    assert "choose a model from the list" in text


def test_a_client_installs_only_ids_of_the_servers_catalog(server):
    """The Install trigger with a path, a URL or an unknown id is refused in one line; nothing is fetched."""
    own = f"http://127.0.0.1:{server['port']}"
    calls = [("trame.trigger", ["sai_install", [value], {}]) for value in
             ("/etc", "../../etc/passwd", "http://evil.example/model.zip", "no_such_model", {"id": "x"})]
    status, reply, pushed = _run(_exchange(server, own, server["secret"], then=calls, listen_s=3.0))
    assert status == 101 and "clientID" in reply["result"]
    text = str(pushed)
    assert text.count("choose a model from the catalog") >= 1 and "Installing" not in text
    with urllib.request.urlopen(f"{server['base']}segmentai/status?secret={server['secret']}", timeout=20) as r:
        facts = json.load(r)
    assert facts["installing"] == "" and facts["last_install"] is None
