"""The web app's safety rules without a browser: bind address and token, uploads, server-side paths."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest
from segmentai_core.errors import InputError
from segmentai_web.config import is_loopback, parse_config
from segmentai_web.guard import request_refusal, tokens_match
from segmentai_web.uploads import check_upload, list_data_images, resolve_data_path

NIFTI_HEADER = bytes(344) + b"n+1\x00" + bytes(4)


def test_local_by_default_and_token_elsewhere(monkeypatch):
    monkeypatch.delenv("SEGMENTAI_WEB_TOKEN", raising=False)
    local = parse_config([])
    # Loopback too: a random per-start secret, never wslink's public default.
    assert local.host == "127.0.0.1" and local.token and len(local.token) >= 16
    assert local.token != parse_config([]).token and local.token != "wslink-secret"
    assert local.url == f"http://127.0.0.1:8080/?secret={local.token}"
    remote = parse_config(["--host", "0.0.0.0", "--port", "9000"])
    assert remote.token and len(remote.token) >= 16  # generated: never reachable without one
    assert remote.url == f"http://127.0.0.1:9000/?secret={remote.token}"
    assert parse_config(["--host", "10.1.2.3", "--token", "my-secret-token"]).token == "my-secret-token"
    monkeypatch.setenv("SEGMENTAI_WEB_TOKEN", "from-the-environment")
    assert parse_config(["--host", "10.1.2.3"]).token == "from-the-environment"
    assert local.precision == "float32" and parse_config(["--precision", "bfloat16"]).precision == "bfloat16"
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


@pytest.mark.parametrize("argv, text", [
    (["--token", "short"], "at least 8"),
    (["--token", "          "], "spaces only"),
    (["--token", ""], "spaces only"),
    (["--token", " padded-token "], "no surrounding spaces"),
    (["--port", "70000"], "--port"),
    (["--max-upload-mb", "0"], "positive"),
    (["--data", "/no/such/folder"], "no such folder"),
])
def test_bad_options_one_line(argv, text):
    with pytest.raises(InputError, match=text):
        parse_config(argv)


@pytest.mark.parametrize("bound, host, origin, refused", [
    ("127.0.0.1", "127.0.0.1:8080", None, False),
    ("127.0.0.1", "localhost:8080", "http://localhost:8080", False),
    ("127.0.0.1", "[::1]:8080", "http://[::1]:8080", False),
    ("127.0.0.1", "127.0.0.1:8080", "http://evil.example", True),           # another site's page
    ("127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1:9999", True),         # another local server's page
    ("127.0.0.1", "127.0.0.1:8080", "null", True),                          # sandboxed frame, file://
    ("127.0.0.1", "evil.example:8080", "http://evil.example:8080", True),   # DNS rebinding
    ("127.0.0.1", "evil.example:8080", None, True),
    ("127.0.0.1", "127.0.0.1:9999", None, True),
    ("127.0.0.1", None, None, True),
    ("127.0.0.1", "127.0.0.1:8080:1", None, True),
    ("10.1.2.3", "10.1.2.3:8080", "http://10.1.2.3:8080", False),
    ("10.1.2.3", "evil.example:8080", None, True),
    ("0.0.0.0", "ward-pc.hospital.local:8080", "http://ward-pc.hospital.local:8080", False),
    ("0.0.0.0", "ward-pc.hospital.local:8080", "http://evil.example", True),
])
def test_host_and_origin_rules(bound, host, origin, refused):
    reason = request_refusal(host, origin, bound, 8080)
    assert (reason is not None) == refused, reason


def test_tokens_compare_exactly():
    assert tokens_match("s3cret-token", "s3cret-token")
    assert not tokens_match("s3cret-tokem", "s3cret-token") and not tokens_match("", "")
    assert not tokens_match(None, "s3cret-token") and not tokens_match("wslink-secret", "s3cret-token")


def test_uploads_are_sniffed_and_limited():
    assert check_upload("head.nii", NIFTI_HEADER + bytes(100), 10_000) == ".nii"
    assert check_upload("head.nii.gz", gzip.compress(NIFTI_HEADER + bytes(100)), 10_000) == ".nii.gz"
    assert check_upload("head.nrrd", b"NRRD0004\ntype: short\n", 10_000) == ".nrrd"
    with pytest.raises(InputError, match="notes.nii.gz is not a .nii.gz image"):
        check_upload("notes.nii.gz", b"plain text", 10_000)
    with pytest.raises(InputError, match="not an image this page opens"):
        check_upload("report.pdf", b"%PDF-1.7", 10_000)
    with pytest.raises(InputError, match="is not an image this page opens"):
        check_upload("labels.seg.nrrd", b"NRRD0004\n", 10_000)
    with pytest.raises(InputError, match="accepts up to"):
        check_upload("big.nii", NIFTI_HEADER + bytes(2 * 2**20), 2**20)


def test_server_files_stay_inside_data(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.nii.gz").write_bytes(b"x")
    (data / "notes.txt").write_text("x")
    (tmp_path / "secret.nii").write_bytes(b"x")
    assert list_data_images(data) == ["sub/a.nii.gz"]
    assert resolve_data_path(data, "sub/a.nii.gz") == (data / "sub" / "a.nii.gz").resolve()
    for bad in ("../secret.nii", "/etc/passwd", "notes.txt", "sub/missing.nii"):
        with pytest.raises(InputError):
            resolve_data_path(data, bad)
    with pytest.raises(InputError, match="without --data"):
        resolve_data_path(None, "a.nii")


def test_core_cli_knows_web_without_importing_it():
    """``segmentai web --help`` lists the options; the core stays free of trame, VTK and Slicer."""
    code = ("import sys; from segmentai_core.cli.main import build_parser; build_parser(); "
            "bad = [m for m in ('vtk', 'slicer', 'trame', 'trame_slicer', 'segmentai_web.server') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0
    out = subprocess.run([sys.executable, "-m", "segmentai_core.cli.main", "web", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--max-upload-mb" in out.stdout and "--token" in out.stdout


def test_upload_buffers_are_per_client_and_limited_as_chunks_arrive():
    from segmentai_web.uploads import UploadBuffers

    buffers = UploadBuffers(max_bytes=1000)
    buffers.add("a", [{"name": "a.nii", "content": b"x" * 600}])
    with pytest.raises(InputError, match="larger than this server accepts"):
        buffers.add("a", [{"name": "a.nii", "content": [b"y" * 300, b"z" * 300]}])  # refused at this chunk
    assert buffers.pending_bytes() == 0 and buffers.finish("a") == []  # dropped at once, not at the end
    with pytest.raises(InputError, match="not bytes"):
        buffers.add("b", [{"name": "b.nii", "content": {"not": "bytes"}}])
    with pytest.raises(InputError, match="malformed"):
        buffers.add("b", "not a list")
    buffers.add("c", [{"name": "../../c.nii", "content": b"c" * 10}])  # another client is unaffected
    assert buffers.finish("c") == [("c.nii", b"c" * 10)] and buffers.pending_bytes() == 0
