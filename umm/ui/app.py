"""``build_app``: the Blocks over a model manager (no launch; tests build it with a test manager)."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from umm.inputs import MAX_FILE_BYTES
from umm.manager import ModelManager
from umm.ui import api, examples, info, page
from umm.ui.context import UiContext
from umm.ui.tabs import chat, compare, edit, generate, models

log = logging.getLogger(__name__)

TITLE = "umm · unified multimodal models"
CSS = """
.umm-card { font-size: 0.9em; }
.umm-card blockquote { margin: 0 0 6px 0; padding: 4px 10px; border-left: 3px solid #f59e0b;
  background: rgba(245, 158, 11, 0.08); }
#umm-header h1 { margin-bottom: 0; }
.umm-seed-row { align-items: end; }
.umm-banner { padding: 6px 12px; border-left: 4px solid #6366f1; background: rgba(99, 102, 241, 0.08); }
.umm-seed-row button { max-height: 40px; margin-bottom: 10px; }
"""
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")


def build_app(
    manager: ModelManager, *, public: bool = False, max_upload_bytes: int = MAX_FILE_BYTES, queue_size: int = 64,
    mcp: bool = False,
) -> gr.Blocks:
    """The whole UI. ``public`` hides load/unload (a public Space must not let visitors evict models)."""
    ctx = UiContext(manager, public=public, max_upload_bytes=max_upload_bytes, examples=examples.examples())
    demo_models = [s.name for s in manager.catalog if s.demo]
    # gradio's own upload/output cache: files older than a day go, checked hourly
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as app:
        header = "# umm\nChat, generate and edit with unified multimodal models: one lane, one model resident."
        if demo_models:
            header += ("\n\n**Demo mode:** the models marked ⚄ are tiny checkpoints with *random weights*; "
                       "they run offline and produce noise, to show how the app works.")
        gr.Markdown(header, elem_id="umm-header")
        banner = info.first_run_banner(manager)
        if banner:
            gr.Markdown(banner, elem_id="umm-first-run", elem_classes=["umm-banner"])
        with gr.Tabs(elem_id="umm-tabs") as tabs:
            with gr.Tab("Chat / VQA", id="chat", elem_id="tab-chat"):
                chat_tab = chat.build(ctx, app)
            with gr.Tab("Text → image", id="generate", elem_id="tab-generate"):
                gen_tab = generate.build(ctx, app)
            with gr.Tab("Edit", id="edit", elem_id="tab-edit"):
                edit_tab = edit.build(ctx, app)
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                compare.build(ctx, app)
            with gr.Tab("Models", id="models", elem_id="tab-models"):
                models.build(ctx, app)
        _wire_loop(tabs, chat_tab, gen_tab, edit_tab)
        api.register(ctx)
    if mcp:  # launched with mcp_server=True: generate, edit and chat as tools, nothing else
        api.mcp_tools_only(app)
    app.queue(max_size=queue_size, default_concurrency_limit=1)
    return app


def _wire_loop(tabs: gr.Tabs, chat_tab: dict, gen_tab: dict, edit_tab: dict) -> None:
    """The UMM loop: ask any understanding model about a generated or edited image; edit a generated one."""

    def chosen(images: list | None, index: int | None) -> str:
        if not images:
            raise gr.Error("No image yet: run once first.")
        item = images[min(index or 0, len(images) - 1)]
        return item[0] if isinstance(item, (list, tuple)) else item

    def ask(images: list | None, index: int | None) -> tuple[dict, Any]:
        return {"text": "Describe this image.", "files": [chosen(images, index)]}, gr.Tabs(selected="chat")

    def edit_this(images: list | None, index: int | None) -> tuple[str, Any]:
        return chosen(images, index), gr.Tabs(selected="edit")

    for tab in (gen_tab, edit_tab):
        tab["ask"].click(ask, [tab["gallery"], tab["selected"]], [chat_tab["box"], tabs], queue=False,
                         api_visibility="private")
    gen_tab["edit_this"].click(edit_this, [gen_tab["gallery"], gen_tab["selected"]], [edit_tab["image"], tabs],
                               queue=False, api_visibility="private")


UPLOAD_CAP_FACTOR = 5
"""gradio's own upload limit, as a multiple of ours (``max_upload_bytes``, which the input checks apply).

A file over our limit but under gradio's still arrives, so the input check can refuse the send with a
clear message while the box keeps the typed text and the image; gradio's client would instead drop the
file with its own toast. gradio's limit stays, a few times higher, as the server's protection.
"""


def launch_kwargs(max_upload_bytes: int) -> dict:
    """Launch settings that belong to the UI (theme and CSS moved to launch in gradio 6).

    Responses are gzipped for clients that accept it: the page and its config are mostly JSON schemas
    repeated per component (about 350 kB for the demo app) and shrink about tenfold. Starlette leaves
    event streams (queue updates, MCP) and images uncompressed.
    """
    from starlette.middleware import Middleware
    from starlette.middleware.gzip import GZipMiddleware

    return {
        "max_file_size": UPLOAD_CAP_FACTOR * max_upload_bytes, "theme": THEME, "css": CSS + page.CSS,
        "js": page.ON_LOAD,
        "app_kwargs": {"middleware": [Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)]},
    }
