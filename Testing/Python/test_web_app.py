"""End to end: ``segmentai web`` on 127.0.0.1 driven by Playwright with Debian's chromium.

One server (token required, a temporary dataset, user folder and ``--data`` folder) and one browser
serve the whole module; both are shut down at the end. The browser tests skip with a reason on a developer
machine without chromium, EGL, trame-slicer or Playwright; with ``CI=true`` those are errors.
Screenshots go to ``build/test-artifacts/web-*.png`` (and to ``$SEGMENTAI_WEB_SCREENSHOTS`` when set,
which is how ``docs/images/web-*.png`` are made).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from web_harness import CHROMIUM, CHROMIUM_ARGS, ROOT, WebServer, server_env, skip_unless_ready  # noqa: E402

ARTIFACTS = ROOT / "build" / "test-artifacts"
TOKEN = "test-token-0123456789"
DATA_FILE_NAME = "head.nii.gz"

pytestmark = skip_unless_ready("web tests", [("playwright", "playwright"),
                                              ("trame_slicer", "trame-slicer[standalone]")], browser=True)


def _save_shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"web-{name}.png"
    page.screenshot(path=str(path))
    extra = os.environ.get("SEGMENTAI_WEB_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path


class Server(WebServer):
    """A ``segmentai web`` child process on a free port of 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        self.dataset = tmp / "dataset"
        # --data: the sample under another name in a sub-folder, beside a file that is no image.
        self.data = tmp / "data"
        (self.data / "sub").mkdir(parents=True)
        shutil.copyfile(ROOT / "Resources" / "SampleData" / "sample_t1.nii.gz", self.data / "sub" / DATA_FILE_NAME)
        (self.data / "notes.txt").write_text("not an image\n")
        super().__init__(tmp, ["--dataset", str(self.dataset), "--max-upload-mb", "50", "--data", str(self.data)],
                         server_env(tmp, SEGMENTAI_WEB_TOKEN=TOKEN, OMP_NUM_THREADS="2"))

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.url}segmentai/status?secret={TOKEN}", timeout=30) as response:
            return json.load(response)

    def wait_status(self, predicate, timeout: float = 60, what: str = "") -> dict:
        deadline = time.time() + timeout
        status = self.status()
        while not predicate(status):
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last status {status}")
            time.sleep(0.25)
            status = self.status()
        return status


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("web"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 850}, accept_downloads=True)
            page = context.new_page()
            page.goto(f"{server.url}?secret={TOKEN}")
            page.wait_for_selector("#sai-sample", timeout=60_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def segmented_sample(server, page) -> dict:
    """The bundled sample open and segmented (the workflow test leaves it so; alone, a test gets it here)."""
    status = server.status()
    if status["volume"] != "SegmentAI sample T1" or not status["voxels"].get("Brain"):
        page.click("#sai-sample")
        server.wait_status(lambda s: s["volume"] == "SegmentAI sample T1" and not s["busy"], 60, "the sample")
        page.click("#sai-segment")
        status = server.wait_status(lambda s: not s["busy"] and s["voxels"].get("Brain", 0) > 0, 180, "the segment")
        page.wait_for_selector("#sai-segments .sai-voxels", timeout=30_000)
    return status


def _labelmap_sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).hexdigest()


def test_token_is_required(server):
    """Without the token: the sign-in form at / and no status; with it, the page."""
    for path in ("", "segmentai/status", "?secret=wrong-token-000"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(server.url + path, timeout=10)
        assert error.value.code == 401
    body = error.value.read().decode()
    assert "access token" in body and "Wrong token" in body
    with urllib.request.urlopen(f"{server.url}?secret={TOKEN}", timeout=10) as response:
        assert response.status == 200 and "<html" in response.read().decode().lower()


# What a start may print that a user can do nothing about: VTK warnings (each printed twice before),
# an exception in a state callback, a traceback.
START_NOISE = re.compile(r"Warning: In |WARN\||ERR\||ERROR: In |callback exception|Traceback")


def test_clean_start_and_segmentai_title(server, page):
    """The server starts and serves the page without warnings or exceptions; the page is titled SegmentAI
    from its first byte (trame's static page said "trame is built by Kitware" until the state arrived)."""
    noise = [line for line in server.log_text().splitlines() if START_NOISE.search(line)]
    assert not noise, "the start printed:\n" + "\n".join(noise[:20])
    assert page.title() == "SegmentAI"
    with urllib.request.urlopen(f"{server.url}index.html", timeout=10) as response:
        assert re.search(r"<title>\s*SegmentAI\s*</title>", response.read().decode()), "static page title"


def test_open_server_data_file(server, page):
    """A file chosen under "Server file (--data)" opens: its volume is loaded and Segment is enabled."""
    page.click(".v-field:has(#sai-data-file)")  # the field, not its hidden input, opens the menu
    items = page.locator(".v-overlay .v-list-item")
    items.first.wait_for(timeout=10_000)
    assert items.all_inner_texts() == [f"sub/{DATA_FILE_NAME}"]  # notes.txt is no image: not listed
    items.first.click()
    status = server.wait_status(lambda s: s["volume"] == "head", 60, "the --data file")
    assert "error" not in status["message"].lower(), status
    page.wait_for_function("document.querySelector('#sai-volume').textContent.trim() === 'head'", timeout=30_000)
    page.wait_for_selector("#sai-segment:not([disabled])", timeout=10_000)


def test_workflow_segment_click_undo_save_download(server, page, tmp_path):
    from segmentai_core.io import read_labelmap, read_segmentation

    t0 = time.time()
    page.click("#sai-sample")
    status = server.wait_status(lambda s: s["volume"] == "SegmentAI sample T1", 60, "the sample")
    assert status["voxels"] == {"Segment_1": 0} or all(v == 0 for v in status["voxels"].values())

    page.click("#sai-segment")
    page.wait_for_selector("#sai-progress", timeout=30_000)  # the progress bar and Cancel while it runs
    assert page.is_enabled("#sai-cancel")
    _save_shot(page, "segmenting")
    page.wait_for_selector("#sai-segments .sai-voxels", timeout=120_000)
    status = server.wait_status(lambda s: not s["busy"] and s["voxels"].get("Brain", 0) > 0, 120, "the segment")
    brain = status["voxels"]["Brain"]
    assert 250_000 < brain < 450_000, status  # the sample's brain is about 1.1 L of 1.5 mm voxels
    segmented_sha = status["labelmap_sha256"]
    assert page.locator("#sai-segments .sai-voxels").first.get_attribute("data-voxels") == str(brain)
    page.wait_for_timeout(1500)  # let the views stream the new overlay
    _save_shot(page, "segmented")

    # A background click in the middle of the axial view (inside the brain, where the segment holds
    # every voxel once its ventricles are filled) refines the segment.
    page.click("#sai-click-negative")
    view = max(page.query_selector_all("img.image-display-area"),
               key=lambda e: (e.bounding_box() or {"width": 0})["width"])
    box = view.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    status = server.wait_status(lambda s: s["labelmap_sha256"] != segmented_sha, 60, "the click's change")
    assert status["can_undo"]
    clicked_sha = status["labelmap_sha256"]
    page.wait_for_selector("#sai-undo:not([disabled])", timeout=10_000)
    page.click("#sai-click-off")
    page.wait_for_timeout(1500)
    _save_shot(page, "click")

    page.click("#sai-undo")
    status = server.wait_status(lambda s: s["labelmap_sha256"] == segmented_sha, 30, "undo")
    assert status["voxels"]["Brain"] == brain and status["can_redo"]
    page.click("#sai-redo")
    server.wait_status(lambda s: s["labelmap_sha256"] == clicked_sha, 30, "redo")

    page.click("#sai-save-case")
    status = server.wait_status(lambda s: s["cases"] == 1, 30, "the saved case")
    case_label = read_labelmap(server.dataset / "labelsTr" / "case_0001.nii.gz")
    assert _labelmap_sha(case_label.array) == clicked_sha
    assert (server.dataset / "imagesTr" / "case_0001_0000.nii.gz").is_file()
    page.wait_for_timeout(500)
    _save_shot(page, "saved-case")

    with page.expect_download(timeout=30_000) as download:
        page.click("#sai-download-nii")
    nii = tmp_path / "labels.nii.gz"
    download.value.save_as(nii)
    assert _labelmap_sha(read_labelmap(nii).array) == clicked_sha
    with page.expect_download(timeout=30_000) as download:
        page.click("#sai-download-seg")
    seg = tmp_path / "result.seg.nrrd"
    download.value.save_as(seg)
    volume, labels = read_segmentation(seg)
    assert [label.name for label in labels] == ["Brain"]
    assert int((volume.array > 0).sum()) == server.status()["voxels"]["Brain"]
    assert time.time() - t0 < 150


def test_non_image_upload_changes_nothing(server, page):
    before = server.status()
    page.set_input_files("#sai-upload", files=[{"name": "notes.nii.gz", "mimeType": "application/gzip",
                                                "buffer": b"these are notes, not an image\n" * 10}])
    # An earlier notice may still be shown: wait for the upload's own message.
    page.wait_for_function("(document.querySelector('#sai-message') || {}).textContent?.includes('notes.nii.gz')",
                           timeout=30_000)
    message = page.inner_text("#sai-message")
    assert "notes.nii.gz is not a .nii.gz image" in message, message
    after = server.status()
    assert after["volume"] == before["volume"] and after["labelmap_sha256"] == before["labelmap_sha256"]


def _download_labels(page, tmp_path, name: str) -> np.ndarray:
    from segmentai_core.io import read_labelmap

    with page.expect_download(timeout=30_000) as download:
        page.click("#sai-download-nii")
    path = tmp_path / f"{name}.nii.gz"
    download.value.save_as(path)
    return read_labelmap(path).array


def _view_point(page, fx: float, fy: float):
    view = max(page.query_selector_all("img.image-display-area"),
               key=lambda e: (e.bounding_box() or {"width": 0})["width"])
    box = view.bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def _draw_box(page, server, corner1, corner2) -> dict:
    before = server.status()["last_box"]
    page.click("#sai-click-box")
    page.wait_for_timeout(300)
    for fx, fy in (corner1, corner2):
        page.mouse.click(*_view_point(page, fx, fy))
        page.wait_for_timeout(300)
    return server.wait_status(lambda s: s["last_box"] not in (None, before), 60, "the box")


def _select(page, name: str) -> None:
    page.click(f"#sai-segments .sai-segment[data-segment='{name}'] .sai-select")


def test_box_prompt_and_locked_segment(server, page, tmp_path, segmented_sample):
    """A 2D box changes the selected segment inside its rectangle only and undoes; a locked segment never changes."""
    before_labels = _download_labels(page, tmp_path, "before-box")
    before = server.status()
    status = _draw_box(page, server, (0.40, 0.40), (0.62, 0.58))
    assert status["labelmap_sha256"] != before["labelmap_sha256"] and status["can_undo"], status
    box = status["last_box"]
    lo, hi = np.array(box["ijk_min"]), np.array(box["ijk_max"])
    flat = int(np.flatnonzero(hi - lo < 1.0)[0])  # the slice's voxel axis (i, j, k)
    after_labels = _download_labels(page, tmp_path, "after-box")
    changed = np.argwhere(after_labels != before_labels)  # [k, j, i] rows
    assert len(changed), "the box changed nothing"
    on_slice = changed[changed[:, 2 - flat] == int(np.rint((lo[flat] + hi[flat]) / 2))]
    assert len(on_slice), "nothing changed on the box's slice"
    ijk = on_slice[:, ::-1]
    inside = np.all((ijk >= np.floor(lo - 0.5)) & (ijk <= np.ceil(hi + 0.5)), axis=1)
    assert inside.all(), f"{(~inside).sum()} voxels changed outside the box on its slice"
    page.click("#sai-click-off")
    page.wait_for_timeout(1500)
    _save_shot(page, "box")

    page.click("#sai-undo")
    server.wait_status(lambda s: s["labelmap_sha256"] == before["labelmap_sha256"], 30, "undo of the box")

    # A second segment, drawn with a box in front of the brain (the orbits), then locked.
    page.click("#sai-add-segment")
    status = server.wait_status(lambda s: len(s["voxels"]) == 2, 30, "the new segment")
    second = next(sid for sid in status["voxels"] if sid != "Brain")
    assert status["active_segment"] == second
    status = _draw_box(page, server, (0.18, 0.22), (0.45, 0.42))
    second_voxels = status["voxels"][second]
    assert second_voxels > 0, status
    page.click("#sai-click-off")
    second_name = next(name for name in status["segments"] if name != "Brain")
    page.click(f"#sai-segments .sai-segment[data-segment='{second_name}'] .sai-lock")
    status = server.wait_status(lambda s: second in s["locked"], 30, "the lock")

    # Refining the locked segment is refused; refining Brain over it leaves it as it was.
    page.click("#sai-click-positive")
    # Under load the mode switch can reach the server after the view click; a refused click changes
    # nothing, so clicking again until the refusal shows is safe.
    for attempt in range(3):
        page.mouse.click(*_view_point(page, 0.45, 0.45))
        try:
            server.wait_status(lambda s: "locked" in s["message"], 10, "the refusal")
            break
        except AssertionError:
            if attempt == 2:
                raise
    assert server.status()["voxels"][second] == second_voxels
    page.click("#sai-click-off")
    _select(page, "Brain")
    server.wait_status(lambda s: s["active_segment"] == "Brain", 30, "Brain selected")
    brain_sha = server.status()["labelmap_sha256"]
    status = _draw_box(page, server, (0.15, 0.20), (0.60, 0.60))
    assert status["voxels"][second] == second_voxels, status
    assert status["labelmap_sha256"] != brain_sha or "no change" in status["message"], status
    page.click("#sai-click-off")
    page.wait_for_timeout(1500)
    _save_shot(page, "box-locked")


# View fractions (x, y) of the largest (axial) view: a stroke in the scalp behind the brain, and a short one
# across its middle (kept within the object's few voxels of thickness, whatever the engine grows around it).
OBJECT_STROKE = [(0.40, 0.885), (0.50, 0.895), (0.60, 0.885)]
BACKGROUND_STROKE = [(0.43, 0.897), (0.49, 0.891), (0.55, 0.886)]


def _stroke_voxels(scribble: dict) -> tuple:
    """Array indices (k, j, i) of the voxels under a scribble's polyline (its control points, continuous i, j, k),
    sampled as the session paints a stroke (every half voxel): a denser sampling also catches the corners a
    diagonal line only grazes, which the brush leaves alone."""
    from segmentai_core.interaction.prompts import polyline_samples

    samples = polyline_samples(np.asarray(scribble["ijk"], dtype=float), 0.5)
    return tuple(np.unique(np.rint(samples).astype(int), axis=0)[:, ::-1].T)


def _place_stroke(page, server, mode: str, points) -> None:
    """Click a stroke's points in the largest view in scribble ``mode`` (positive / negative)."""
    page.click(f"#sai-click-scribble-{mode}")
    # Wait for the server's place mode: a click that arrives before it would be no stroke point.
    server.wait_status(lambda s: s["click_mode"] == f"scribble-{mode}", 30, "the scribble mode")
    for index, (fx, fy) in enumerate(points):
        page.mouse.click(*_view_point(page, fx, fy))
        server.wait_status(lambda s: s["scribble_points"] == index + 1, 30, f"stroke point {index + 1}")
        if index == 0:  # one point is no stroke yet
            page.wait_for_selector("#sai-finish-scribble[disabled]", timeout=10_000)
    page.wait_for_selector("#sai-finish-scribble:not([disabled])", timeout=10_000)


def _draw_scribble(page, server, mode: str, points, shot: str = "") -> dict:
    """Place a stroke, then Finish stroke; returns the status once the scribble is applied."""
    before = server.status()["last_scribble"]
    _place_stroke(page, server, mode, points)
    if shot:
        page.wait_for_timeout(500)  # let the view stream the stroke
        _save_shot(page, shot)
    page.click("#sai-finish-scribble")
    return server.wait_status(lambda s: s["last_scribble"] not in (None, before) and s["scribble_points"] == 0,
                              60, "the scribble")


def test_scribble_prompts(server, page, tmp_path, segmented_sample):
    """A locked segment refuses a stroke; on a new segment an object scribble adds the voxels under it and a
    background scribble through them removes them, each one undo step back to the exact labels."""
    page.click("#sai-click-off")
    if not server.status()["locked"]:  # run alone: lock Brain (after the box test, its second segment is locked)
        page.click("#sai-segments .sai-segment[data-segment='Brain'] .sai-lock")
        server.wait_status(lambda s: s["locked"], 30, "the lock")
    # A locked segment (the box test's second one): a finished stroke on it is refused and kept.
    page.click("#sai-segments .sai-segment[data-locked='true'] .sai-select")
    status = server.wait_status(lambda s: s["active_segment"] in s["locked"], 30, "the locked segment selected")
    locked, locked_voxels = status["active_segment"], status["voxels"][status["active_segment"]]
    _place_stroke(page, server, "positive", OBJECT_STROKE[:2])
    page.click("#sai-finish-scribble")
    status = server.wait_status(lambda s: "locked" in s["message"], 30, "the refusal")
    assert status["voxels"][locked] == locked_voxels and status["scribble_points"] == 2, status
    page.click("#sai-click-off")  # drops the unfinished stroke
    server.wait_status(lambda s: s["click_mode"] == "off" and s["scribble_points"] == 0, 30, "the stroke dropped")

    # A new, empty segment: its session starts without the earlier prompts (a 2D box keeps its slice).
    count = len(status["voxels"])
    page.click("#sai-add-segment")
    before = server.wait_status(lambda s: len(s["voxels"]) == count + 1, 30, "the new segment")
    new = before["active_segment"]
    assert new not in before["locked"] and before["voxels"][new] == 0, before

    labels_before = _download_labels(page, tmp_path, "before-scribble")
    status = _draw_scribble(page, server, "positive", OBJECT_STROKE, shot="scribble")
    scribble = status["last_scribble"]
    assert scribble["segment"] == new and scribble["positive"], status
    assert "Object scribble:" in status["message"] and status["voxels"][new] > 0, status
    assert {k: v for k, v in status["voxels"].items() if k != new} == \
        {k: v for k, v in before["voxels"].items() if k != new}, "another segment changed"
    object_sha, object_voxels = status["labelmap_sha256"], status["voxels"][new]
    labels = _download_labels(page, tmp_path, "object-scribble")
    stroke = _stroke_voxels(scribble)
    # The stroke paints the voxels no segment had; those of other segments (Brain may reach into the scalp
    # after the earlier clicks) are protected and stay theirs.
    free = labels_before[stroke] == 0
    assert free.mean() >= 0.3, "the stroke should lie mostly outside the other segments"
    value = np.bincount(labels[stroke][free].ravel()).argmax()  # the new segment's label
    assert value > 0 and np.count_nonzero(labels == value) == object_voxels
    assert np.mean(labels[stroke][free] == value) >= 0.9, "the object stroke's free voxels are not object"
    np.testing.assert_array_equal(labels[stroke][~free], labels_before[stroke][~free])

    status = _draw_scribble(page, server, "negative", BACKGROUND_STROKE)
    stroke = _stroke_voxels(status["last_scribble"])
    assert not status["last_scribble"]["positive"] and "Background scribble:" in status["message"], status
    assert np.mean(labels[stroke] == value) >= 0.5, "the background stroke missed the object"
    assert 0 < status["voxels"][new] < object_voxels, status
    labels = _download_labels(page, tmp_path, "background-scribble")
    assert np.mean(labels[stroke] == value) <= 0.1, "the background stroke's voxels are still object"
    page.click("#sai-click-off")
    page.wait_for_timeout(500)
    _save_shot(page, "scribble-background")

    # Each stroke is one undo step, back to the exact labels before it.
    page.click("#sai-undo")
    server.wait_status(lambda s: s["labelmap_sha256"] == object_sha, 30, "undo of the background scribble")
    page.click("#sai-undo")
    status = server.wait_status(lambda s: s["labelmap_sha256"] == before["labelmap_sha256"], 30,
                                "undo of the object scribble")
    assert status["voxels"][new] == 0
