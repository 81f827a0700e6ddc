"""The web app's model catalog in a browser: list, Install with progress, Cancel, then the model is selectable.

``segmentai web`` runs on 127.0.0.1 with ``SEGMENTAI_CATALOG`` naming a catalog written here, whose
archive (a tiny MONAI bundle built here) a local HTTP server of this test serves, slowly enough to
press Cancel. Playwright drives Debian's chromium. No test reaches the internet.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import catalog_archives as ca  # noqa: E402
from web_harness import CHROMIUM, CHROMIUM_ARGS, ROOT, WebServer, server_env, skip_unless_ready  # noqa: E402

ARTIFACTS = ROOT / "build" / "test-artifacts"
TOKEN = "test-token-catalog-0123"


pytestmark = skip_unless_ready("web tests", [("playwright", "playwright"),
                                              ("trame_slicer", "trame-slicer[standalone]"), ("monai", "monai")],
                               browser=True)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """A local server with a tiny bundle's zip (2 MB of padding: a download long enough to cancel)."""
    root = tmp_path_factory.mktemp("zoo")
    folder = ca.tiny_monai_bundle(root)
    (folder / "docs").mkdir()
    (folder / "docs" / "padding.bin").write_bytes(os.urandom(2 << 20))
    data = ca.zip_folder(folder, root / "tiny.zip").read_bytes()
    with ca.ArchiveServer({"/zoo/tiny.zip": data}) as server:
        server.catalog = ca.write_catalog(root / "catalog.json", [
            {**ca.catalog_entry("tiny_ct", "monai_bundle", [ca.part("model", server.url("/zoo/tiny.zip"), data)],
                                classes=3), "license": {"weights": "CC-BY-NC-4.0", "commercial_use": False}},
            {**ca.catalog_entry("tiny_sigmoid", "monai_bundle", [ca.part("model", server.url("/none.zip"), None)]),
             "classes": {"count": 3, "multi_label": True}},
        ])
        yield server


@pytest.fixture(scope="module")
def web(tmp_path_factory, archives):
    tmp = tmp_path_factory.mktemp("web")
    env = server_env(tmp, SEGMENTAI_WEB_TOKEN=TOKEN, SEGMENTAI_CATALOG=str(archives.catalog), OMP_NUM_THREADS="2")
    server = WebServer(tmp, ["--dataset", str(tmp / "dataset")], env)
    try:
        yield server.url, tmp / "home"
    finally:
        server.stop()


def status(url: str) -> dict:
    with urllib.request.urlopen(f"{url}segmentai/status?secret={TOKEN}", timeout=30) as response:
        return json.load(response)


def wait_status(url: str, predicate, timeout: float, what: str) -> dict:
    deadline, facts = time.time() + timeout, status(url)
    while not predicate(facts):
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last status {facts}")
        time.sleep(0.2)
        facts = status(url)
    return facts


def test_catalog_install_cancel_and_select(web, archives):
    from playwright.sync_api import sync_playwright

    url, home = web
    before = status(url)
    assert "tiny_ct@1.0.0" not in before["models"] and before["catalog"]["tiny_ct"] == "not installed"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 850}).new_page()
            questions = []
            page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
            page.goto(f"{url}?secret={TOKEN}")
            page.wait_for_selector("#sai-catalog-title", timeout=60_000)
            page.click("#sai-catalog-title")
            rows = page.locator("#sai-catalog .sai-catalog-row")
            rows.first.wait_for(timeout=10_000)
            assert rows.count() == 2
            tiny = page.locator("#sai-catalog .sai-catalog-row[data-model='tiny_ct']")
            assert tiny.locator(".sai-licence").inner_text() == "CC-BY-NC-4.0 (non-commercial)"
            assert "not installed" in tiny.locator(".sai-installed").inner_text()
            sigmoid = page.locator("#sai-catalog .sai-catalog-row[data-model='tiny_sigmoid']")
            assert sigmoid.locator(".sai-install").is_disabled()  # sigmoid outputs: not importable yet

            archives.chunk_delay_s = 0.05  # about 1.6 s for the archive: time to press Cancel
            tiny.locator(".sai-install").click()
            page.wait_for_selector("#sai-install-progress", timeout=10_000)
            assert questions and "CC-BY-NC-4.0 (non-commercial)" in questions[-1]
            wait_status(url, lambda s: s["installing"] == "tiny_ct", 10, "the install")
            page.click("#sai-install-cancel")
            facts = wait_status(url, lambda s: (s["last_install"] or {}).get("state") == "cancelled", 30, "Cancel")
            assert "tiny_ct@1.0.0" not in facts["models"] and not (home / "models").exists()
            page.wait_for_function("document.querySelector('#sai-install-text').textContent.includes('cancelled')",
                                   timeout=10_000)

            archives.chunk_delay_s = 0.002
            tiny.locator(".sai-install").click()
            facts = wait_status(url, lambda s: (s["last_install"] or {}).get("state") == "succeeded", 60, "install")
            assert facts["last_install"]["packages"] == ["tiny_ct@1.0.0"]
            assert "tiny_ct@1.0.0" in facts["models"] and facts["model"] == "tiny_ct@1.0.0"  # selected
            assert facts["catalog"]["tiny_ct"] == "installed"
            assert any(r[1] and r[1].startswith("bytes=") for r in archives.requests)  # the download resumed
            page.wait_for_function("document.querySelector(\"#sai-catalog .sai-catalog-row[data-model='tiny_ct'] "
                                   ".sai-installed\").textContent.trim() === 'installed'", timeout=10_000)
            assert tiny.locator(".sai-install").is_disabled()
            page.wait_for_function("document.querySelector('#sai-model').closest('.v-select')"
                                   ".textContent.includes('tiny_ct@1.0.0')", timeout=10_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "web-catalog.png"))
        finally:
            browser.close()
