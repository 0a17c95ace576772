"""The page's feedback in headless Chromium: upload limits, input checks, scrolling, progress, Compare's zoom.

One app (upload limit 1 MB) and one browser per module. Screenshots go to a temporary directory and,
when ``UMM_SCREENSHOT_DIR`` is set, there too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import BROWSER_MARKS, CHROMIUM, free_port
from conftest import CHROMIUM_ARGS as ARGS

pytestmark = BROWSER_MARKS

LIMIT = 1_000_000


@pytest.fixture(scope="module")
def url(tiny_catalog):
    from umm.manager import ModelManager
    from umm.ui.app import build_app, launch_kwargs

    app = build_app(ModelManager(tiny_catalog, device="cpu"), max_upload_bytes=LIMIT)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
               **launch_kwargs(LIMIT))
    try:
        yield app.local_url
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path: Path):
    """``snap(page, name)``: a full-page screenshot, kept under UMM_SCREENSHOT_DIR when that is set."""
    folder = tmp_path / "shots"
    folder.mkdir()

    def snap(page, name: str, full_page: bool = False) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    yield snap
    target = os.environ.get("UMM_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in folder.iterdir():
            shutil.copy(shot, Path(target) / shot.name)



def pick_model(page, prefix: str, text: str) -> None:
    """Choose the first model whose label contains ``text``."""
    page.click(f"#{prefix}-model input")
    page.locator("ul[role='listbox'] li", has_text=text).first.click()


def open_page(browser, url: str, tab: str | None = None, marker: str | None = None, **viewport):
    page = browser.new_page(viewport={"width": 1300, "height": 900, **viewport})
    page.goto(url, timeout=120_000)  # generous: the shared CI machine can be very busy
    page.wait_for_selector("#chat-history", timeout=120_000)
    if tab:
        page.get_by_role("tab", name=tab).click()
        page.wait_for_selector(marker, state="visible", timeout=60_000)
    return page


def toasts(page) -> list[str]:
    return page.locator(".toast-body").all_inner_texts()


def noise_png(path: Path, side: int) -> Path:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def test_an_oversized_chat_upload_blocks_the_send_and_keeps_the_message(browser, url, tmp_path, shots) -> None:
    big = noise_png(tmp_path / "big.png", 900)  # about 2.4 MB: over the app's 1 MB
    assert big.stat().st_size > LIMIT
    page = open_page(browser, url)
    try:
        page.set_input_files("#chat-input input[type='file']", str(big))
        page.wait_for_selector("#chat-input img", timeout=60_000)  # kept in the box, not dropped by the client
        page.fill("#chat-input textarea", "what is this?")
        page.press("#chat-input textarea", "Enter")
        page.wait_for_selector("#chat-input :text('the limit is 1 MB')", timeout=60_000)
        shots(page, "chat_oversized_upload")
        assert page.input_value("#chat-input textarea") == "what is this?"
        assert page.locator("#chat-input img").count() == 1
        assert not page.locator("#chat-history .message").count()  # nothing was sent
        assert not toasts(page)
    finally:
        page.close()


def test_edit_upload_check_survives_a_component_update(browser, url, tmp_path, shots) -> None:
    """Picking a model updates the input image (shown or hidden), which rebuilds it for the session."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    page = open_page(browser, url, "Edit", "#edit-instruction textarea")
    try:
        pick_model(page, "edit", "omnigen2")
        page.wait_for_timeout(1000)
        page.set_input_files("#edit-image input[type='file']", str(broken))
        page.fill("#edit-instruction textarea", "make it blue")
        page.click("#edit-run")
        page.wait_for_selector("#edit-image :text('The file is not an image')", timeout=60_000)
        shots(page, "edit_broken_upload")
        assert not toasts(page), toasts(page)
    finally:
        page.close()


def on_screen(page, selector: str) -> bool:
    """At least half of the element (or of the window, for a tall one) is in the viewport."""
    return page.evaluate("""(selector) => {
        const box = document.querySelector(selector).getBoundingClientRect();
        const seen = Math.min(box.bottom, window.innerHeight) - Math.max(box.top, 0);
        return seen >= 0.5 * Math.min(box.height, window.innerHeight);
    }""", selector)


def test_results_and_input_errors_scroll_into_view(browser, url, shots) -> None:
    """The Generate button sits below the open settings; the error and the result are above, off screen."""
    page = open_page(browser, url, "Text → image", "#gen-prompt textarea", height=700)
    try:
        pick_model(page, "gen", "janus")
        page.wait_for_timeout(500)
        page.click("#gen-run")  # empty prompt: the check's message is on the prompt box, above the fold
        page.wait_for_selector("#gen-prompt .validation-error", timeout=60_000)
        page.wait_for_function("(s) => { const b = document.querySelector(s).getBoundingClientRect();"
                               " return b.top >= 0 && b.bottom <= window.innerHeight; }",
                               arg="#gen-prompt .validation-error", timeout=10_000)
        shots(page, "scroll_to_input_error")
        page.fill("#gen-prompt textarea", "a small blue house")
        page.locator("#gen-run").scroll_into_view_if_needed()
        assert not on_screen(page, "#gen-gallery")
        page.click("#gen-run")
        page.wait_for_selector("#gen-summary :text('seed')", timeout=120_000)
        page.wait_for_timeout(1500)  # smooth scrolling
        shots(page, "scroll_to_result")
        assert on_screen(page, "#gen-gallery")
    finally:
        page.close()


def test_compare_shows_the_columns_side_by_side_with_one_zoom(browser, url, shots) -> None:
    page = open_page(browser, url, "Compare", "#cmp-prompt textarea", width=900, height=600)
    try:
        page.fill("#cmp-prompt textarea", "a red apple")
        page.click("#cmp-run")
        page.wait_for_function("() => ['cmp-status-0', 'cmp-status-1'].every(id =>"
                               " document.getElementById(id).innerText.includes('✓'))", timeout=180_000)
        for index in range(2):  # no progress overlay was left on a column
            assert not page.locator(f"#cmp-col-{index} .eta-bar").count()
        page.click("#cmp-zoom")
        page.wait_for_selector("#umm-zoom .umm-zoom-view img", timeout=60_000)
        images = page.locator("#umm-zoom .umm-zoom-view img")
        assert images.count() == 2
        page.evaluate("() => { const s = document.getElementById('umm-zoom-level'); s.value = 4;"
                      " s.dispatchEvent(new Event('input')); }")  # 8×
        sizes = page.evaluate("() => [...document.querySelectorAll('#umm-zoom .umm-zoom-view img')]"
                              ".map(i => [i.getBoundingClientRect().width, i.naturalWidth])")
        base = max(natural for _, natural in sizes)  # one scale: the widest image's pixels × 8 in every pane
        assert all(abs(width - 8 * base) < 1 for width, _ in sizes), sizes
        page.evaluate("() => { const v = document.querySelector('#umm-zoom .umm-zoom-view');"
                      " v.scrollLeft = 40; v.scrollTop = 30; }")
        page.wait_for_timeout(300)
        offsets = page.evaluate("() => [...document.querySelectorAll('#umm-zoom .umm-zoom-view')]"
                                ".map(v => [v.scrollLeft, v.scrollTop])")
        assert offsets[0] == offsets[1] and offsets[0][0] > 0, offsets  # panning one pans the other
        shots(page, "compare_side_by_side_zoom")
        page.keyboard.press("Escape")
        assert not page.locator("#umm-zoom").count()
    finally:
        page.close()
