"""The panels' catalog install (``segmentai_core.catalog.jobs``, ``.listing``) against a local HTTP server.

A MONAI-bundle archive built here is served from 127.0.0.1 (slowly, for Cancel); the install runs in a
worker thread as the Slicer panel and the web app run it. No test reaches the internet.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import catalog_archives as ca  # noqa: E402

from segmentai_core.catalog import load_catalog  # noqa: E402
from segmentai_core.catalog.jobs import start_install  # noqa: E402
from segmentai_core.catalog.listing import catalog_rows, install_question  # noqa: E402
from segmentai_core.models import ModelRegistry  # noqa: E402

pytest.importorskip("monai", reason="the bundle's network is a MONAI UNet")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    """A Model Zoo-style zip of a tiny bundle, padded with 2 MB of incompressible bytes (a slow download)."""
    root = tmp_path_factory.mktemp("bundle")
    folder = ca.tiny_monai_bundle(root)
    (folder / "docs").mkdir()
    (folder / "docs" / "padding.bin").write_bytes(os.urandom(2 << 20))
    return ca.zip_folder(folder, root / "tiny_ct_segmentation_v0.1.0.zip").read_bytes()


@pytest.fixture()
def setup(tmp_path, archive):
    with ca.ArchiveServer({"/zoo/tiny.zip": archive}) as server:
        entry = ca.catalog_entry("tiny_ct", "monai_bundle", [ca.part("model", server.url("/zoo/tiny.zip"), archive)],
                                 classes=3)
        entry["license"] = {"weights": "CC-BY-NC-4.0", "commercial_use": False}
        catalog = load_catalog(ca.write_catalog(tmp_path / "catalog.json", [entry]))
        registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "home" / "models")
        yield server, catalog, registry


def wait(job, timeout: float = 60.0) -> list:
    """Poll ``job`` as a GUI timer would; returns the progress messages seen."""
    seen, deadline = [], time.time() + timeout
    while not job.done:
        assert time.time() < deadline, f"install still running: {job.progress}"
        if not seen or seen[-1] != job.progress:
            seen.append(job.progress)
        time.sleep(0.01)
    return seen


def test_rows_show_size_licence_and_whether_installed(setup, archive):
    server, catalog, registry = setup
    (row,) = catalog_rows(registry, catalog)
    assert row["summary"] == (f"tiny_ct: CT, 3 classes, {row['size_text']}, CC-BY-NC-4.0 (non-commercial), "
                              "not installed")
    assert row["installable"] and row["size_text"].endswith("MB")
    assert "Weights licence: CC-BY-NC-4.0 (non-commercial)" in row["card"]
    assert "NOT for commercial use" in install_question(row)


def test_install_runs_in_a_worker_with_progress_and_the_model_is_listed(setup):
    server, catalog, registry = setup
    server.chunk_delay_s = 0.002
    job = start_install("tiny_ct", registry=registry, catalog=catalog)
    assert job.thread is not None and job.thread.is_alive()  # the caller's thread is free at once
    seen = wait(job)
    assert job.state == "succeeded", job.error
    assert job.package_ids == ["tiny_ct@1.0.0"] and "tiny_ct" in registry.ids()
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and job.progress == (1.0, "Installed tiny_ct")
    assert any(" of " in message and "/s" in message for _, message in seen), seen  # bytes and rate
    (row,) = catalog_rows(registry, catalog)
    assert row["installed"] == "yes" and not row["installable"] and row["installed_text"] == "installed"
    again = start_install("tiny_ct", registry=registry, catalog=catalog, thread=False)
    assert again.state == "failed" and "installed already" in again.error


def test_cancel_stops_the_download_and_the_next_install_resumes_it(setup, archive):
    server, catalog, registry = setup
    server.chunk_delay_s = 0.02  # about 0.7 s for the whole archive
    job = start_install("tiny_ct", registry=registry, catalog=catalog)
    deadline = time.time() + 30
    while " of " not in job.progress[1] and not job.done:  # the first megabyte has arrived
        assert time.time() < deadline
        time.sleep(0.005)
    job.cancel()
    assert job.join(30) and job.state == "cancelled", (job.state, job.error)
    assert job.error == "Install of tiny_ct cancelled; nothing was installed."
    assert registry.ids() == [] and not registry.user_dir.exists()
    parts = list((registry.user_dir.parent / "downloads").rglob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(archive)
    kept = parts[0].stat().st_size

    server.chunk_delay_s = 0.0
    job = start_install("tiny_ct", registry=registry, catalog=catalog, thread=False)
    assert job.state == "succeeded", job.error
    assert server.requests[-1] == ("/zoo/tiny.zip", f"bytes={kept}-")  # only the rest was asked for
    assert registry.ids() == ["tiny_ct"] and not list(registry.user_dir.parent.rglob("*.part"))


def test_unreachable_host_is_one_line_and_installs_nothing(tmp_path):
    entry = ca.catalog_entry("gone", "monai_bundle", [ca.part("model", "http://127.0.0.1:9/gone.zip", None)])
    catalog = load_catalog(ca.write_catalog(tmp_path / "catalog.json", [entry]))
    registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "home" / "models")
    job = start_install("gone", registry=registry, catalog=catalog, thread=False)
    assert job.state == "failed" and "\n" not in job.error and "connection refused" in job.error
    assert "--from-file gone.zip" in job.error and registry.ids() == []


def test_a_multi_part_model_is_one_choice_and_segments_merged_in_the_mrml_layer(tmp_path, monkeypatch):
    """TotalSegmentator-style parts install as packages, but the selectors list the catalog id once, its card
    names every part, and the panels' segmentation logic runs the parts and merges them into one node."""
    pytest.importorskip("dynamic_network_architectures", reason="nnU-Net networks are built with it")
    pytest.importorskip("slicer_core", reason="the panels' segmentation logic runs on slicer-core")
    from segmentai_core.catalog.choices import model_card, model_choices
    from segmentai_core.volume import Volume
    from segmentai_mrml.logic import SegmentationLogic
    from segmentai_mrml.scene_setup import create_context
    from segmentai_mrml.volume_nodes import add_volume_node

    organs = ca.zip_folder(ca.tiny_nnunet_release(tmp_path / "a"), tmp_path / "organs.zip").read_bytes()
    liver = ca.zip_folder(ca.tiny_nnunet_release(tmp_path / "b", labels={"background": 0, "liver": 1}, seed=1),
                          tmp_path / "liver.zip").read_bytes()
    with ca.ArchiveServer({"/organs.zip": organs, "/liver.zip": liver}) as server:
        entry = ca.catalog_entry("tiny_total", "nnunet", [
            ca.part("organs", server.url("/organs.zip"), organs, classes={"1": "spleen", "2": "kidney_right"}),
            ca.part("liver", server.url("/liver.zip"), liver, classes={"1": "liver"})], classes=3)
        entry["classes"]["names"] = {"1": "spleen", "2": "kidney_right", "3": "liver"}
        catalog = load_catalog(ca.write_catalog(tmp_path / "catalog.json", [entry]))
        registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "home" / "models")
        job = start_install("tiny_total", registry=registry, catalog=catalog, thread=False)
    assert job.state == "succeeded", job.error
    assert sorted(job.package_ids) == ["tiny_total.liver@1.0.0", "tiny_total.organs@1.0.0"]
    assert job.choice == "tiny_total"
    choices = model_choices(registry, catalog)
    assert [value for value, _ in choices] == ["tiny_total"], choices  # the parts are not listed on their own
    assert "2 networks, 3 classes" in choices[0][1]
    card = model_card("tiny_total", registry, catalog)
    assert "tiny_total.organs@1.0.0" in card and "tiny_total.liver@1.0.0" in card

    import numpy as np

    from segmentai_core.geometry import Geometry

    rng = np.random.default_rng(0)
    array = (rng.normal(40, 30, (22, 24, 20)) + 250 * (rng.random((22, 24, 20)) > 0.9)).astype(np.float32)
    array[:, :3] = -1000
    context = create_context()
    try:
        volume_node = add_volume_node(context.scene, Volume(array, Geometry.create(array.shape, (2.5, 2.0, 2.0))),
                                      "ct")
        monkeypatch.setenv("SEGMENTAI_CATALOG", str(catalog.path))  # the catalog the app ships (here: the test's)
        node = SegmentationLogic(context.scene, registry).segment(volume_node, "tiny_total", "cpu")
        segmentation = node.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        assert names == ["spleen", "kidney_right", "liver"]
    finally:
        context.close()
