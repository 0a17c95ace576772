"""The page in headless Chromium: tabs switch, a tiny generation shows up in the gallery.

Screenshots go to a temporary directory and, when ``UMM_SCREENSHOT_DIR`` is set, there too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import BROWSER_MARKS, CHROMIUM, free_port
from conftest import CHROMIUM_ARGS as ARGS

pytestmark = BROWSER_MARKS



@pytest.fixture(scope="module")
def url(tiny_catalog):
    from umm.manager import ModelManager
    from umm.ui.app import build_app, launch_kwargs

    app = build_app(ModelManager(tiny_catalog, device="cpu"))
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
               **launch_kwargs(20_000_000))
    try:
        yield app.local_url
    finally:
        app.close()


def test_tabs_and_generation(url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = tmp_path / "shots"
    shots.mkdir()

    def snap(page, name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#chat-history", timeout=30_000)
            snap(page, "chat")
            for tab, marker in [("Edit", "#edit-instruction"), ("Compare", "#cmp-prompt"), ("Models", "#models-table")]:
                page.get_by_role("tab", name=tab).click()
                page.wait_for_selector(marker, state="visible", timeout=15_000)
                snap(page, tab.lower())
            page.get_by_role("tab", name="Text → image").click()
            page.wait_for_selector("#gen-prompt textarea", state="visible", timeout=15_000)
            _pick_model(page, "gen", "janus")
            page.fill("#gen-prompt textarea", "a watercolor lighthouse")
            page.click("#gen-run")
            page.wait_for_selector("#gen-gallery img", timeout=120_000)
            page.wait_for_selector("#gen-summary :text('seed')", timeout=30_000)
            snap(page, "generate")
            assert "seed" in page.inner_text("#gen-summary")
        finally:
            browser.close()
    target = os.environ.get("UMM_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)
    assert {p.name for p in shots.iterdir()} >= {"chat.png", "generate.png", "models.png"}


def _pick_model(page, prefix: str, text: str) -> None:
    """Choose the first model whose label contains ``text`` (keeps the run on a fast tiny model)."""
    page.click(f"#{prefix}-model input")
    option = page.locator("ul[role='listbox'] li", has_text=text).first
    if option.count():
        option.click()
    else:
        page.keyboard.press("Escape")


def test_session_history_png_settings_and_the_umm_loop(url: str, tmp_path: Path) -> None:
    """Generate, see it in the session strip, send it to Chat; a umm PNG dropped in brings its settings back."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    from umm.images import save_png
    from umm.types import RunInfo

    png = save_png(Image.new("RGB", (32, 32), (200, 20, 20)), tmp_path / "old.png",
                   RunInfo("nobody-can-run-me", None, "generate", 4242, {}, prompt="a prompt from a png"))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#chat-history", timeout=30_000)
            page.get_by_role("tab", name="Text → image").click()
            page.wait_for_selector("#gen-prompt textarea", state="visible", timeout=15_000)
            _pick_model(page, "gen", "janus")
            page.fill("#gen-prompt textarea", "a small red house")
            page.click("#gen-run")
            page.wait_for_selector("#gen-gallery img", timeout=120_000)
            page.wait_for_selector("#gen-history img", timeout=30_000)
            assert "seed" in page.inner_text("#gen-history")
            page.screenshot(path=str(tmp_path / "history.png"), full_page=True)

            page.click("#gen-ask")
            page.wait_for_selector("#chat-input img", state="visible", timeout=15_000)
            page.screenshot(path=str(tmp_path / "ask.png"), full_page=True)

            page.get_by_role("tab", name="Text → image").click()
            page.click("#gen-result-settings")  # the accordion that holds the PNG loader
            page.set_input_files("#gen-load-png input[type='file']", str(png))
            page.wait_for_function(
                "document.querySelector('#gen-prompt textarea').value === 'a prompt from a png'", timeout=15_000)
            assert page.input_value("#gen-seed input") == "4242"
        finally:
            browser.close()
