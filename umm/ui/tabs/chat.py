"""Chat / VQA: multimodal turns, streamed replies, stop, clear and regenerate."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from umm.errors import UmmError
from umm.types import Message, UnderstandRequest
from umm.ui import checks
from umm.ui.context import STOPPED, Picker, UiContext, model_picker, render_controls, wire_picker, wire_stop
from umm.ui.page import reveal_after
from umm.ui.runs import LANE_KWARGS, progress_control, stream_text, user_errors

log = logging.getLogger(__name__)
SLOT = "chat"


def build(ctx: UiContext, app: gr.Blocks) -> dict[str, Any]:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            picker = model_picker(ctx, "understand", "chat")
            seed = render_controls(picker, "chat")
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(
                label="Conversation", elem_id="chat-history", height=460, buttons=["copy"],
                placeholder="Ask about an image: attach it with the clip button, type a question, press Enter.",
            )
            box = gr.MultimodalTextbox(
                placeholder="Message (attach images with the clip button)", file_types=["image"], file_count="multiple",
                elem_id="chat-input", show_label=False, submit_btn=True,
            )
            with gr.Row():
                stop = gr.Button("■ Stop", variant="stop", size="sm", elem_id="chat-stop")
                regen = gr.Button("↻ Regenerate", size="sm", elem_id="chat-regenerate")
                clear = gr.Button("✕ Clear", size="sm", elem_id="chat-clear")
            if ctx.examples.get("chat"):
                gr.Examples(ctx.examples["chat"], inputs=[box], label="Examples", cache_examples=False)
    wire_picker(ctx, picker, "chat", app)
    _wire(ctx, picker, chatbot, box, seed, stop, regen, clear)
    return {"box": box}


def _wire(ctx, picker: Picker, chatbot, box, seed, stop, regen, clear) -> None:
    panel = picker.panel
    kwargs = dict(panel.components)
    names = ["model_id", "message", "history", "seed", *kwargs]

    def check_chat(model_id, message, history, seed, **params):
        checks.check_model(ctx.manager, model_id, "understand")
        message = message or {}
        text = checks.check_text(message.get("text"), "message", what="message")
        images = checks.check_images(message.get("files") or [], "message", ctx.max_upload_bytes)
        return _request(ctx, model_id, history or [], text, images, seed, panel.collect(model_id, params))

    def chat(model_id, message, history, seed, request: gr.Request = None, **params) -> Iterator[Any]:
        with user_errors():
            req = check_chat(model_id, message, history, seed, **params)
            files = [f if isinstance(f, str) else f.get("path") for f in (message or {}).get("files") or []]
            user = {"role": "user", "content": [*({"path": f} for f in files), message.get("text", "")]}
            before = list(history or [])
            yield from _reply(ctx, model_id, req, [*before, user], request, clear_box=True, before=before,
                              typed=message)

    def check_regen(model_id, history, seed, **params):
        checks.check_model(ctx.manager, model_id, "understand")
        history = _drop_reply(history or [])
        if not history:
            raise checks.FieldError("history", "Nothing to regenerate yet: send a message first.")
        return _request(ctx, model_id, history, None, [], seed, panel.collect(model_id, params))

    def regenerate(model_id, history, seed, request: gr.Request = None, **params) -> Iterator[Any]:
        with user_errors():
            req = check_regen(model_id, history, seed, **params)
            yield from _reply(ctx, model_id, req, _drop_reply(history), request, clear_box=False)

    common = {"concurrency_id": LANE_KWARGS["concurrency_id"], "concurrency_limit": 1, "show_progress": "minimal"}
    send = box.submit(
        panel.omittable(chat), [picker.dropdown, box, chatbot, seed], [chatbot, box], inputs_kwargs=kwargs,
        api_name="chat", validator=checks.validator(names, check_chat), **common,
    )
    again = regen.click(
        panel.omittable(regenerate), [picker.dropdown, chatbot, seed], [chatbot, box], inputs_kwargs=kwargs,
        api_name="chat_regenerate", validator=checks.validator(["model_id", "history", "seed", *kwargs], check_regen),
        **common,
    )

    wire_stop(ctx, stop, SLOT, [send, again], "chat_stop", marked=chatbot, mark=_mark_stopped)
    reveal_after([send, again], "chat-history")

    def clear_chat(request: gr.Request = None) -> tuple[list, None]:
        ctx.runs.cancel(request, SLOT)  # a reply still streaming stops too, freeing the lane
        return [], None

    clear.click(clear_chat, None, [chatbot, box], cancels=[send, again], queue=False, api_name="chat_clear")


def _mark_stopped(history: list[dict] | None) -> list[dict]:
    """The partial reply stays, marked as stopped (the same cue as the other tabs)."""
    history = list(history or [])
    if history and history[-1].get("role") == "assistant":
        last = dict(history[-1])
        content = last.get("content")
        text = content if isinstance(content, str) else "".join(
            p.get("text", "") if isinstance(p, dict) else str(p) for p in (content or []))
        last["content"] = f"{text}\n\n*{STOPPED}*".strip()
        history[-1] = last
    return history


def _drop_reply(history: list[dict]) -> list[dict]:
    """History without its trailing assistant turn(s), so the last user turn is answered again."""
    history = list(history)
    while history and history[-1].get("role") == "assistant":
        history.pop()
    return history


def _request(ctx: UiContext, model_id, history, text, images, seed, params) -> UnderstandRequest:
    messages = [_message(ctx, turn) for turn in history]
    messages = [m for m in messages if m.text or m.images]
    if text is not None:
        messages.append(Message("user", text, images))
    count = sum(len(m.images) for m in messages)
    checks.check_image_count(ctx.manager, model_id, "understand", count, "message" if images else "history")
    return UnderstandRequest(messages, params=params, seed=checks.check_seed(seed))


def _message(ctx: UiContext, turn: dict) -> Message:
    """A chatbot turn (content: str or list of parts) as a typed message; user images are reopened."""
    content = turn.get("content")
    parts = content if isinstance(content, list) else [content]
    texts, files = [], []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            if part.get("type") == "text" or "text" in part:
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "file" or "file" in part or "path" in part:
                data = part.get("file", part)
                files.append(data.get("path") if isinstance(data, dict) else data)
    role = "assistant" if turn.get("role") == "assistant" else "user"
    images = checks.check_images(files, "history", ctx.max_upload_bytes) if role == "user" else []
    return Message(role, "\n".join(t for t in texts if t).strip(), images)


def _reply(ctx, model_id, req, history, request, *, clear_box: bool, before=None, typed=None) -> Iterator[Any]:
    """Stream the reply into a new assistant turn.

    If the run fails, the conversation goes back to ``before`` and the box to ``typed`` (what the user
    had written), so a failed turn leaves no empty bubble and loses no text; then the error shows.
    """
    reply = {"role": "assistant", "content": ""}
    history = [*history, reply]
    box = None if clear_box else gr.update()
    started = time.perf_counter()
    text = ""
    with ctx.runs.track(request, SLOT, progress_control(ctx.manager, None, "reply")) as control:
        yield history, box
        try:
            for chunk in stream_text(ctx.manager, model_id, req, control):
                text += chunk
                reply["content"] = text
                yield history, gr.update()
        except UmmError:
            if not text:
                yield (before if before is not None else history[:-1]), (typed if clear_box else gr.update())
            raise
    log.info("chat %s: %d chars in %.2f s", model_id, len(text), time.perf_counter() - started)
    if not text:
        reply["content"] = "*(empty reply)*"
        yield history, gr.update()
