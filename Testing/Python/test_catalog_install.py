"""``segmentai models install|available|remove`` against a local HTTP server serving tiny models.

The archives are built here from tiny models in the providers' release layouts (see
:mod:`catalog_archives`) and served from 127.0.0.1 by a server the test starts; no test reaches
the internet.
"""

from __future__ import annotations

import errno
import json
import socket
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import catalog_archives as ca  # noqa: E402

from segmentai_core.cli.main import main  # noqa: E402

pytest.importorskip("dynamic_network_architectures", reason="nnU-Net networks are built with it")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, needle: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("segmentai: error:") and needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err
    return lines[0]


def files_under(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """name → archive bytes: a TotalSegmentator-style nnU-Net release zip and a MONAI Model Zoo-style zip."""
    root = tmp_path_factory.mktemp("archives")
    nnunet = ca.zip_folder(ca.tiny_nnunet_release(root / "nnunet"), root / f"{ca.TS_FOLDER}.zip")
    nnunet_b = ca.zip_folder(ca.tiny_nnunet_release(root / "nnunet_b", labels={"background": 0, "liver": 1}, seed=1),
                             root / "part_b.zip")
    bundle = ca.zip_folder(ca.tiny_monai_bundle(root / "bundle"), root / "tiny_ct_segmentation_v0.1.0.zip")
    return {"nnunet": nnunet.read_bytes(), "nnunet_b": nnunet_b.read_bytes(), "bundle": bundle.read_bytes()}


@pytest.fixture()
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("SEGMENTAI_HOME", str(path))
    return path


@pytest.fixture()
def server(archives):
    with ca.ArchiveServer({"/ts/tiny_total.zip": archives["nnunet"], "/ts/part_b.zip": archives["nnunet_b"],
                           "/zoo/tiny_bundle.zip": archives["bundle"]}) as running:
        yield running


@pytest.fixture()
def use_catalog(tmp_path, monkeypatch):
    def write(*entries):
        path = ca.write_catalog(tmp_path / "catalog.json", list(entries))
        monkeypatch.setenv("SEGMENTAI_CATALOG", str(path))
        return path
    return write


def nnunet_entry(server, archives, model_id="tiny_total_fast", **part_extra):
    return ca.catalog_entry(model_id, "nnunet", [ca.part("model", server.url("/ts/tiny_total.zip"),
                                                         archives["nnunet"], **part_extra)])


@pytest.fixture()
def ct_volume(tmp_path) -> Path:
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    array = rng.normal(40, 30, (22, 24, 20)) + 250 * (rng.random((22, 24, 20)) > 0.9)
    array[:, :3] = -1000  # air, so that it looks like CT in Hounsfield units
    array = array.astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.5))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


# --- end to end ------------------------------------------------------------------------------------

def test_install_nnunet_release_then_list_and_segment(capsys, home, server, archives, use_catalog, ct_volume,
                                                      tmp_path):
    use_catalog(nnunet_entry(server, archives))
    code, out, err = run_cli(capsys, "models", "available", "--json")
    assert code == 0
    row = json.loads(out)[0]
    assert row["id"] == "tiny_total_fast" and row["installed"] == "no" and row["size_bytes"] == len(archives["nnunet"])

    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 0, err
    assert "installed tiny_total_fast@1.0.0" in out and "weights licence: Apache-2.0" in out
    code, out, _ = run_cli(capsys, "models", "list", "--json")
    listed = {e["id"]: e for e in json.loads(out)}
    assert listed["tiny_total_fast"]["labels"] == {"1": "spleen", "2": "kidney_right"}
    assert json.loads(run_cli(capsys, "models", "available", "--json")[1])[0]["installed"] == "yes"
    assert not (home / "downloads").exists()  # the verified archive is not kept once imported
    assert [p for p in (home / "models").iterdir() if p.name.startswith(".")] == []  # no staging left

    output = tmp_path / "ct.seg.nrrd"
    code, out, err = run_cli(capsys, "segment", ct_volume, "-o", output, "--model", "tiny_total_fast", "--quiet")
    assert code == 0, err
    from segmentai_core.io import read_segmentation

    labelmap, labels = read_segmentation(output)[:2]
    assert labelmap.array.shape == (22, 24, 20)
    assert {label.name for label in labels} <= {"spleen", "kidney_right"}

    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    one_error_line(err, "is installed already")
    code, out, err = run_cli(capsys, "models", "remove", "tiny_total_fast")
    assert code == 0 and "removed tiny_total_fast@1.0.0" in out
    assert json.loads(run_cli(capsys, "models", "available", "--json")[1])[0]["installed"] == "no"


def test_install_monai_bundle_with_the_python_api(home, server, archives, use_catalog, ct_volume):
    from segmentai_core.catalog.install import install_model
    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.io import read_volume
    from segmentai_core.models import ModelRegistry
    from segmentai_core.progress import Progress

    use_catalog(ca.catalog_entry("tiny_ct_segmentation", "monai_bundle",
                                 [ca.part("model", server.url("/zoo/tiny_bundle.zip"), archives["bundle"])]))
    seen, raw = [], []
    result = install_model("tiny_ct_segmentation", progress=Progress(lambda f, m: seen.append((f, m))),
                           on_bytes=lambda done, total, rate: raw.append((done, total, rate)))
    assert [p.full_id for p in result.packages] == ["tiny_ct_segmentation@1.0.0"]
    assert raw[-1][0] == raw[-1][1] == len(archives["bundle"]) and raw[-1][2] > 0
    assert any(" of " in m and "/s" in m for _, m in seen) and seen[-1][0] == 1.0
    package = ModelRegistry().get("tiny_ct_segmentation")
    assert [label.name for label in package.manifest.labels] == ["liver", "spleen"]
    labels = Segmenter(package, device="cpu").segment(read_volume(ct_volume)).labelmap
    assert labels.array.shape == (22, 24, 20)


def test_multi_part_model_installs_as_parts_and_is_removed_whole(capsys, home, server, archives, use_catalog):
    use_catalog(ca.catalog_entry("tiny_total", "nnunet", [
        ca.part("organs", server.url("/ts/tiny_total.zip"), archives["nnunet"]),
        ca.part("liver", server.url("/ts/part_b.zip"), archives["nnunet_b"])]))
    code, out, err = run_cli(capsys, "models", "install", "tiny_total")
    assert code == 0, err
    assert "installed tiny_total.organs@1.0.0" in out and "installed tiny_total.liver@1.0.0" in out
    code, out, err = run_cli(capsys, "models", "remove", "tiny_total")
    assert code == 0 and "removed tiny_total.organs@1.0.0" in out and "removed tiny_total.liver@1.0.0" in out
    assert [p.name for p in (home / "models").iterdir()] == []


def test_failing_second_part_leaves_no_first_part(capsys, home, server, archives, use_catalog):
    use_catalog(ca.catalog_entry("tiny_total", "nnunet", [
        ca.part("organs", server.url("/ts/tiny_total.zip"), archives["nnunet"]),
        ca.part("liver", server.url("/ts/missing.zip"), archives["nnunet_b"])]))
    code, out, err = run_cli(capsys, "models", "install", "tiny_total")
    assert code == 2
    one_error_line(err, "HTTP 404")
    assert files_under(home) == []


# --- downloads -------------------------------------------------------------------------------------

def test_interrupted_download_resumes_with_range_to_the_same_bytes(capsys, home, server, archives, use_catalog):
    use_catalog(nnunet_entry(server, archives))
    half = len(archives["nnunet"]) // 2
    server.drop_after["/ts/tiny_total.zip"] = half
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 2
    one_error_line(err, "run the same command again to resume")
    partial = home / "downloads" / "tiny_total_fast-1.0.0" / "tiny_total.zip.part"
    assert partial.read_bytes() == archives["nnunet"][:half]
    assert not (home / "models").exists()  # nothing installed meanwhile

    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 0, err
    assert server.requests[-1] == ("/ts/tiny_total.zip", f"bytes={half}-")  # only the rest was asked for
    assert "installed tiny_total_fast@1.0.0" in out
    assert not (home / "downloads").exists()


def test_download_api_resumes_and_verifies(tmp_path, server, archives):
    from segmentai_core.catalog.download import Expected, download

    data = archives["bundle"]
    target = tmp_path / "bundle.zip"
    (tmp_path / "bundle.zip.part").write_bytes(data[:1000])
    expected = Expected(size=len(data), sha256=ca.sha256_of(data))
    assert download(server.url("/zoo/tiny_bundle.zip"), target, expected).read_bytes() == data
    assert server.requests == [("/zoo/tiny_bundle.zip", "bytes=1000-")]
    # A .part the server cannot continue (longer than the file) starts again.
    target.unlink()
    (tmp_path / "bundle.zip.part").write_bytes(data + b"extra")
    again = download(server.url("/zoo/tiny_bundle.zip"), target, Expected(sha256=ca.sha256_of(data)))
    assert again.read_bytes() == data
    # A server that ignores the range sends the whole file again: the .part restarts, same bytes.
    target.unlink()
    (tmp_path / "bundle.zip.part").write_bytes(b"stale" * 100)
    server.ignore_range = True
    assert download(server.url("/zoo/tiny_bundle.zip"), target, expected).read_bytes() == data
    assert server.requests[-1] == ("/zoo/tiny_bundle.zip", "bytes=500-")


def test_wrong_hash_is_refused_and_nothing_is_left(capsys, home, server, archives, use_catalog):
    use_catalog(nnunet_entry(server, archives, sha256="0" * 64))
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 2
    one_error_line(err, "SHA-256")
    assert "deleted" in err and files_under(home) == []


def test_wrong_size_is_refused_before_the_body(capsys, home, server, archives, use_catalog):
    use_catalog(nnunet_entry(server, archives, size_bytes=len(archives["nnunet"]) + 1))
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    one_error_line(err, "bytes, not the")
    assert files_under(home) == []


def test_not_found_is_one_line_with_the_way_out(capsys, home, server, archives, use_catalog):
    entry = nnunet_entry(server, archives)
    entry["parts"][0]["url"] = server.url("/ts/gone.zip")
    use_catalog(entry)
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 2
    line = one_error_line(err, "HTTP 404")
    assert "--from-file gone.zip" in line and "nothing was installed" in line
    assert files_under(home) == []


def test_refused_connection_is_one_line_exit_2(capsys, home, archives, use_catalog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    entry = ca.catalog_entry("tiny_total_fast", "nnunet", [
        ca.part("model", f"http://127.0.0.1:{port}/tiny_total.zip", archives["nnunet"])])
    use_catalog(entry)
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 2
    line = one_error_line(err, "connection refused")
    assert "on a machine that is online" in line and "install tiny_total_fast --from-file tiny_total.zip" in line
    assert files_under(home) == []


def test_install_from_a_file_downloaded_elsewhere(capsys, home, archives, use_catalog, tmp_path):
    archive = tmp_path / "tiny_total.zip"
    archive.write_bytes(archives["nnunet"])
    use_catalog(ca.catalog_entry("tiny_total_fast", "nnunet", [
        ca.part("model", "http://127.0.0.1:9/tiny_total.zip", archives["nnunet"])]))  # unreachable: not used
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast", "--from-file", archive)
    assert code == 0, err
    assert archive.exists()  # the user's file is theirs
    wrong = tmp_path / "other.zip"
    wrong.write_bytes(archives["bundle"])
    run_cli(capsys, "models", "remove", "tiny_total_fast")
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast", "--from-file", wrong)
    one_error_line(err, "bytes, not the")


def test_unknown_hash_is_said_and_size_checked(capsys, home, server, archives, use_catalog):
    use_catalog(nnunet_entry(server, archives, sha256=None))
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 0, err
    assert "note: tiny_total_fast: no hash is known for this archive; only its size was checked" in err


def test_unknown_architecture_fails_before_downloading(capsys, home, server, archives, use_catalog):
    entry = nnunet_entry(server, archives)
    entry["importer"], entry["architecture"] = "monai_bundle", "FancyNet3000"
    use_catalog(entry)
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    line = one_error_line(err, "needs the FancyNet3000 architecture")
    assert "nothing was downloaded" in line and server.requests == [] and files_under(home) == []


def test_cancel_leaves_nothing_installed(home, server, archives, use_catalog):
    from segmentai_core.catalog.install import install_model
    from segmentai_core.errors import Cancelled
    from segmentai_core.progress import CancelToken, Progress

    use_catalog(nnunet_entry(server, archives))
    token = CancelToken()

    def cancel_while_importing(fraction, message):
        if message.startswith("Importing"):
            token.cancel()

    with pytest.raises(Cancelled):
        install_model("tiny_total_fast", progress=Progress(cancel_while_importing, token))
    assert files_under(home) == []


# --- unsafe archives and a full disk ----------------------------------------------------------------

def _serve_zip(server, use_catalog, tmp_path, build):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        build(archive)
    data = path.read_bytes()
    server.files["/evil.zip"] = data
    use_catalog(ca.catalog_entry("evil", "nnunet", [ca.part("model", server.url("/evil.zip"), data)]))


def test_zip_with_parent_members_is_refused(capsys, home, server, use_catalog, tmp_path):
    _serve_zip(server, use_catalog, tmp_path, lambda z: (z.writestr("model/dataset.json", "{}"),
                                                         z.writestr("../../escaped.txt", "gotcha")))
    code, out, err = run_cli(capsys, "models", "install", "evil")
    one_error_line(err, "points outside the folder")
    assert not list(tmp_path.rglob("escaped.txt")) and files_under(home) == []


def test_zip_with_a_symlink_member_is_refused(capsys, home, server, use_catalog, tmp_path):
    def build(archive):
        link = zipfile.ZipInfo("model/plans.json")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    _serve_zip(server, use_catalog, tmp_path, build)
    code, out, err = run_cli(capsys, "models", "install", "evil")
    one_error_line(err, "is a link")
    assert files_under(home) == []


def test_tar_links_devices_and_absolute_paths_are_refused(tmp_path):
    import io
    import tarfile

    from segmentai_core.catalog.unpack import unpack_archive
    from segmentai_core.errors import ModelError

    def tar_with(info: tarfile.TarInfo, data: bytes = b"") -> Path:
        path = tmp_path / f"{info.name.strip('/').replace('/', '_')}.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data else None)
        return path

    link = tarfile.TarInfo("model/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    hard = tarfile.TarInfo("model/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "model/x"
    device = tarfile.TarInfo("model/dev")
    device.type = tarfile.CHRTYPE
    absolute = tarfile.TarInfo("/tmp/absolute.txt")
    for info, needle in ((link, "is a link"), (hard, "is a link"), (device, "device or special"),
                         (absolute, "absolute path")):
        with pytest.raises(ModelError, match=needle):
            unpack_archive(tar_with(info, b"x" if info is absolute else b""), tmp_path / "out")
        assert not (tmp_path / "out").exists()
    good = tarfile.TarInfo("model/file.txt")
    unpack_archive(tar_with(good, b"hello"), tmp_path / "out")
    assert (tmp_path / "out" / "model" / "file.txt").read_bytes() == b"hello"


def test_archive_limits(tmp_path):
    from segmentai_core.catalog.unpack import unpack_archive
    from segmentai_core.errors import ModelError

    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/zeros.bin", b"\0" * 100_000)
        archive.writestr("a/b.txt", "b")
    with pytest.raises(ModelError, match="more than the"):
        unpack_archive(path, tmp_path / "out", max_bytes=50_000)
    with pytest.raises(ModelError, match="2 members, more than the 1"):
        unpack_archive(path, tmp_path / "out", max_members=1)
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(ModelError, match="not a zip or tar archive"):
        unpack_archive(tmp_path / "plain.txt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _disk_full(stream, data):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_downloading_leaves_nothing(capsys, home, server, archives, use_catalog, monkeypatch):
    from segmentai_core.catalog import download

    use_catalog(nnunet_entry(server, archives))
    monkeypatch.setattr(download, "write_chunk", _disk_full)
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 2
    one_error_line(err, "disk full while downloading")
    assert files_under(home) == []


def test_disk_full_while_unpacking_leaves_nothing(capsys, home, archives, use_catalog, monkeypatch, tmp_path):
    from segmentai_core.catalog import download

    archive = tmp_path / "tiny_total.zip"
    archive.write_bytes(archives["nnunet"])
    use_catalog(ca.catalog_entry("tiny_total_fast", "nnunet", [
        ca.part("model", "http://127.0.0.1:9/tiny_total.zip", archives["nnunet"])]))
    monkeypatch.setattr(download, "write_chunk", _disk_full)
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast", "--from-file", archive)
    assert code == 2
    one_error_line(err, "disk full while unpacking")
    assert files_under(home) == []


def test_disk_full_while_importing_leaves_nothing(capsys, home, server, archives, use_catalog, monkeypatch):
    import shutil

    use_catalog(nnunet_entry(server, archives))

    def full_copy(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", full_copy)  # the registry's copy into place
    code, out, err = run_cli(capsys, "models", "install", "tiny_total_fast")
    assert code == 2
    one_error_line(err, "No space left on device")
    assert files_under(home) == []


def test_ctrl_c_during_the_second_part_removes_the_first(capsys, home, server, archives, use_catalog, monkeypatch):
    from segmentai_core.models.registry import ModelRegistry

    use_catalog(ca.catalog_entry("tiny_total", "nnunet", [
        ca.part("organs", server.url("/ts/tiny_total.zip"), archives["nnunet"]),
        ca.part("liver", server.url("/ts/part_b.zip"), archives["nnunet_b"])]))
    original = ModelRegistry.import_package
    calls = []

    def interrupted_second(self, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, path)

    monkeypatch.setattr(ModelRegistry, "import_package", interrupted_second)
    code, out, err = run_cli(capsys, "models", "install", "tiny_total")
    assert code == 130 and "interrupted" in err
    assert files_under(home) == []  # the first part, already in place, was taken out again


def test_a_silent_server_times_out_in_one_line(tmp_path):
    from segmentai_core.catalog.download import DownloadError, download

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/model.zip"
        with pytest.raises(DownloadError, match=r"^cannot download .*model\.zip: timed out$") as raised:
            download(url, tmp_path / "model.zip", timeout_s=0.3)
    assert raised.value.unreachable and files_under(tmp_path) == []


def test_multi_part_model_segments_as_one_merged_label_map(capsys, home, server, archives, use_catalog, ct_volume,
                                                           tmp_path):
    from segmentai_core.inference.engine import Segmenter
    from segmentai_core.io import read_segmentation, read_volume
    from segmentai_core.models import ModelRegistry

    entry = ca.catalog_entry("tiny_total", "nnunet", [
        ca.part("organs", server.url("/ts/tiny_total.zip"), archives["nnunet"],
                classes={"1": "spleen", "2": "kidney_right"}),
        ca.part("liver", server.url("/ts/part_b.zip"), archives["nnunet_b"], classes={"1": "liver"})], classes=3)
    entry["classes"]["names"] = {"1": "spleen", "2": "kidney_right", "3": "liver"}
    spleen = {"category": {"scheme": "SCT", "value": "123037004", "meaning": "Anatomical Structure"},
              "type": {"scheme": "SCT", "value": "78961009", "meaning": "Spleen"}}
    entry["classes"]["segments"] = {"1": {"color": [1.0, 0.0, 0.0], "terminology": spleen}}
    use_catalog(entry)
    assert run_cli(capsys, "models", "install", "tiny_total")[0] == 0
    installed = ModelRegistry().get("tiny_total.organs").manifest.labels[0]  # the catalog's style, on install
    assert installed.name == "spleen" and tuple(installed.color) == (1.0, 0.0, 0.0)
    assert installed.terminology.type.value == "78961009"
    output = tmp_path / "merged.seg.nrrd"
    code, out, err = run_cli(capsys, "segment", ct_volume, "-o", output, "--model", "tiny_total", "--quiet")
    assert code == 0, err
    labelmap, labels = read_segmentation(output)[:2]
    assert [(label.value, label.name) for label in labels] == [(1, "spleen"), (2, "kidney_right"), (3, "liver")]
    assert labels[0].terminology is not None and labels[0].terminology.type.meaning == "Spleen"

    # The same as running the parts one by one and letting the later part's foreground win.
    volume = read_volume(ct_volume)
    first = Segmenter(ModelRegistry().get("tiny_total.organs"), device="cpu").segment(volume).labelmap.array
    second = Segmenter(ModelRegistry().get("tiny_total.liver"), device="cpu").segment(volume).labelmap.array
    expected = first.astype(np.uint8).copy()
    expected[second == 1] = 3
    assert np.array_equal(labelmap.array, expected)
    assert (expected == 3).any() and ((expected == 1) | (expected == 2)).any()  # both parts contributed


def test_multi_part_model_with_a_missing_part_says_how_to_repair(capsys, home, server, archives, use_catalog,
                                                                  ct_volume, tmp_path):
    entry = ca.catalog_entry("tiny_total", "nnunet", [
        ca.part("organs", server.url("/ts/tiny_total.zip"), archives["nnunet"]),
        ca.part("liver", server.url("/ts/part_b.zip"), archives["nnunet_b"])], classes=3)
    entry["classes"]["names"] = {"1": "spleen", "2": "kidney_right", "3": "liver"}
    use_catalog(entry)
    code, out, err = run_cli(capsys, "segment", ct_volume, "-o", tmp_path / "x.seg.nrrd", "--model", "tiny_total")
    one_error_line(err, "'tiny_total' is not installed: run 'segmentai models install tiny_total'")
    assert run_cli(capsys, "models", "install", "tiny_total")[0] == 0
    assert run_cli(capsys, "models", "remove", "tiny_total.liver")[0] == 0
    code, out, err = run_cli(capsys, "segment", ct_volume, "-o", tmp_path / "x.seg.nrrd", "--model", "tiny_total")
    one_error_line(err, "is missing the part(s) tiny_total.liver")
    assert not (tmp_path / "x.seg.nrrd").exists()


def test_roi_runs_only_the_parts_it_needs(capsys, home, server, archives, use_catalog, ct_volume, tmp_path):
    from segmentai_core.io import read_segmentation

    entry = ca.catalog_entry("tiny_total", "nnunet", [
        ca.part("organs", server.url("/ts/tiny_total.zip"), archives["nnunet"]),
        ca.part("liver", server.url("/ts/part_b.zip"), archives["nnunet_b"])], classes=3)
    entry["classes"]["names"] = {"1": "spleen", "2": "kidney_right", "3": "liver"}
    use_catalog(entry)
    assert run_cli(capsys, "models", "install", "tiny_total")[0] == 0
    full = tmp_path / "full.seg.nrrd"
    assert run_cli(capsys, "segment", ct_volume, "-o", full, "--model", "tiny_total", "--quiet")[0] == 0
    only = tmp_path / "liver.seg.nrrd"
    code, out, err = run_cli(capsys, "segment", ct_volume, "-o", only, "--model", "tiny_total", "--roi", "Liver",
                             "--quiet")
    assert code == 0, err
    assert "ran 1 of 2 parts (not needed: organs)" in err
    labelmap, labels = read_segmentation(only)[:2]
    assert [(label.value, label.name) for label in labels] == [(3, "liver")]
    assert set(np.unique(labelmap.array)) <= {0, 3} and (labelmap.array == 3).any()
    # A class of a model of one network: that network runs, the other classes are dropped.
    one = tmp_path / "spleen.seg.nrrd"
    code, out, err = run_cli(capsys, "segment", ct_volume, "-o", one, "--model", "tiny_total.organs", "--roi",
                             "spleen", "--quiet")
    assert code == 0, err
    labelmap, labels = read_segmentation(one)[:2]
    assert [label.name for label in labels] == ["spleen"] and set(np.unique(labelmap.array)) <= {0, 1}
    code, out, err = run_cli(capsys, "segment", ct_volume, "-o", tmp_path / "x.seg.nrrd", "--model", "tiny_total",
                             "--roi", "pancreas")
    one_error_line(err, "--roi: model 'tiny_total' has no class 'pancreas'")
