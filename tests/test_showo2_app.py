"""The tiny Show-o2 twin in the demo app's Chat and Text → image tabs (HTTP, gradio_client)."""

from __future__ import annotations

from pathlib import Path

import pytest

gradio = pytest.importorskip("gradio")
from conftest import free_port  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from umm.catalog import Catalog  # noqa: E402
from umm.manager import ModelManager  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODEL = "tiny-showo2"


@pytest.fixture(scope="module")
def client(tiny_catalog):
    from umm.ui.app import build_app, launch_kwargs

    manager = ModelManager(Catalog([tiny_catalog.get(MODEL)]), device="cpu")
    app = build_app(manager, max_upload_bytes=2_000_000)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
               **launch_kwargs(2_000_000))
    try:
        yield Client(app.local_url, verbose=False)
    finally:
        app.close()


def test_chat_with_an_image_then_a_text_turn(client):
    history = client.predict(
        model_id=MODEL, message={"text": "What is in this picture?", "files": [handle_file(ASSETS / "cat.png")]},
        history=[], seed=1, max_new_tokens=8, api_name="/chat",
    )[0]
    assert [m["role"] for m in history] == ["user", "assistant"]
    history = [{"role": m["role"], "content": [{"type": "text", "text": _text(m)}]} for m in history]
    history = client.predict(model_id=MODEL, message={"text": "and the colours?", "files": []}, history=history,
                             seed=2, max_new_tokens=4, api_name="/chat")[0]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


def _text(message: dict) -> str:
    parts = message["content"] if isinstance(message["content"], list) else [message["content"]]
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in parts)


def test_text_to_image_tab(client):
    gallery, _summary, settings, _, files = client.predict(
        model_id=MODEL, prompt="a red cube", seed=3, num_images=2, api_name="/generate"
    )
    assert len(gallery) == 2 and len(files) == 2
    assert settings["seed"] == 3 and settings["params"]["guidance_scale"] == 7.5
