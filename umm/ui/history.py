"""The session history strip: every result of this browser session, newest first, click to restore it."""

from __future__ import annotations

from typing import Any

import gradio as gr

MAX_ENTRIES = 48


def history_strip(prefix: str) -> tuple[gr.Gallery, gr.State]:
    """The strip and its per-session entries (call inside the layout where it should appear)."""
    entries = gr.State([])
    strip = gr.Gallery(
        label="This session · click an image to bring its settings back", columns=8, height=130,
        allow_preview=False, interactive=False, elem_id=f"{prefix}-history",
    )
    return strip, entries


def record(history: tuple[gr.Gallery, gr.State], events: list[Any], settings: gr.JSON, gallery: gr.Gallery) -> None:
    """After each successful run, put its first image and settings at the front of the strip."""
    strip, entries = history

    def add(data: dict | None, images: list | None, current: list[dict]) -> tuple[list, list[dict]]:
        paths = [item[0] if isinstance(item, (list, tuple)) else item for item in images or []]
        if not data or not paths:
            return gr.update(), current
        current = [{"image": paths[0], "settings": data}, *current][:MAX_ENTRIES]
        return [(entry["image"], caption(entry["settings"])) for entry in current], current

    for event in events:
        event.success(add, [settings, gallery, entries], [strip, entries], queue=False, api_visibility="private")


def caption(settings: dict) -> str:
    prompt = str(settings.get("prompt", ""))
    prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    return f"{settings.get('model_id')} · seed {settings.get('seed')} · {prompt}"
