"""Typed API endpoints (``/v1_generate``, ``/v1_edit``, ``/v1_chat``) for scripts.

The tab events take each model parameter as its own input, so a client that leaves one out gets the
value that control starts with, which may be another model's default. These endpoints take the model's
parameters as one dict instead; anything left out takes the chosen model's own catalog default. Images
travel as base64 PNG (outputs carry the settings in their metadata), so no file paths are involved.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import gradio as gr

from umm.control import RunControl
from umm.errors import InputError
from umm.images import png_info
from umm.inputs import check_prompt, open_image
from umm.types import EditRequest, GenerateRequest, ImageResult, Message, UnderstandRequest
from umm.ui.checks import check_seed
from umm.ui.context import UiContext
from umm.ui.runs import LANE_KWARGS, run_images, stream_text, user_errors


def _encode(result: ImageResult) -> dict[str, Any]:
    images = []
    for image in result.images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=png_info(result.info))
        images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {"images_png_base64": images, "info": result.info.as_dict()}


def _decode(images: list[str] | None, max_bytes: int) -> list:
    decoded = []
    for index, text in enumerate(images or []):
        text = text.split(",", 1)[1] if text.startswith("data:") else text
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError:
            raise InputError(f"Image {index + 1} is not valid base64.") from None
        decoded.append(open_image(data, max_bytes=max_bytes))
    return decoded


def _turn(turn: Any, index: int, max_bytes: int) -> Message:
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
        raise InputError(f"history[{index}] must be a dict with role 'user' or 'assistant', text and images.")
    if turn["role"] == "assistant":  # the model's own words, sent back as they came
        return Message("assistant", str(turn.get("text") or ""), [])
    images = _decode(turn.get("images"), max_bytes)
    text = check_prompt(turn.get("text") or "", what=f"history[{index}] text", allow_empty=bool(images))
    return Message("user", text, images)


def register(ctx: UiContext) -> None:
    """Add the endpoints to the Blocks being built; they share the accelerator lane."""
    manager = ctx.manager

    def v1_generate(
        model_id: str, prompt: str, params: dict | None = None, seed: int = -1, negative_prompt: str = ""
    ) -> dict:
        """Generate images from a text prompt with one of the app's models; returns base64 PNGs and the settings.

        Args:
            model_id: a model id from the app's catalog that can generate (see its Models tab).
            prompt: what the image should show.
            params: the model's own parameters by name (steps, guidance, size …); omitted ones take that model's
                defaults.
            seed: a whole number for a reproducible result; -1 picks one at random (it is reported back).
            negative_prompt: what to avoid, for models that take one (others ignore it and say so in info.notes).
        """
        with user_errors():
            spec = manager.catalog.get(model_id)
            request = GenerateRequest(
                check_prompt(prompt), check_prompt(negative_prompt, what="negative prompt", allow_empty=True),
                params=spec.capability("generate").validate(params), seed=check_seed(seed),
            )
            return _encode(run_images(manager, "generate", model_id, request, RunControl(
                time_limit_s=manager.time_limit_s)))

    def v1_edit(
        model_id: str, instruction: str, images: list[str], params: dict | None = None, seed: int = -1,
        negative_prompt: str = "",
    ) -> dict:
        """Edit images by an instruction with one of the app's models; returns base64 PNGs and the settings.

        Args:
            model_id: a model id from the app's catalog that can edit.
            instruction: what to change, e.g. "make the sky purple".
            images: the input image(s) as base64 PNG/JPEG strings or data URLs (the first is edited).
            params: the model's own parameters by name; omitted ones take that model's defaults.
            seed: a whole number for a reproducible result; -1 picks one at random.
            negative_prompt: what to avoid, for models that take one.
        """
        with user_errors():
            spec = manager.catalog.get(model_id)
            request = EditRequest(
                _decode(images, ctx.max_upload_bytes), check_prompt(instruction, what="instruction"),
                check_prompt(negative_prompt, what="negative prompt", allow_empty=True),
                params=spec.capability("edit").validate(params), seed=check_seed(seed),
            )
            if not request.images:
                raise InputError("Give at least one input image.")
            return _encode(run_images(manager, "edit", model_id, request, RunControl(
                time_limit_s=manager.time_limit_s)))

    def v1_chat(
        model_id: str, message: str, images: list[str] | None = None, params: dict | None = None, seed: int = -1,
        history: list[dict] | None = None,
    ) -> dict:
        """Ask one of the app's models about zero or more images; returns the whole reply and the history.

        Args:
            model_id: a model id from the app's catalog that understands images.
            message: the question or instruction.
            images: images for this turn as base64 PNG/JPEG strings or data URLs.
            params: the model's own parameters by name (max_new_tokens, temperature …).
            seed: a whole number for a reproducible reply; -1 picks one at random.
            history: earlier turns as {"role": "user" | "assistant", "text": ..., "images": [base64, ...]}; send
                back the history this endpoint returned to go on with the conversation.
        """
        with user_errors():
            spec = manager.catalog.get(model_id)
            turns = [_turn(turn, index, ctx.max_upload_bytes) for index, turn in enumerate(history or [])]
            question = Message("user", check_prompt(message, what="message"), _decode(images, ctx.max_upload_bytes))
            cap = spec.capability("understand")
            cap.check_images(sum(len(m.images) for m in [*turns, question]))
            request = UnderstandRequest([*turns, question], params=cap.validate(params), seed=check_seed(seed))
            control = RunControl(time_limit_s=manager.time_limit_s)
            text = "".join(stream_text(manager, model_id, request, control))
            new_turns = [{"role": "user", "text": question.text, "images": list(images or [])},
                         {"role": "assistant", "text": text, "images": []}]
            return {"text": text, "model_id": model_id, "params": request.params,
                    "history": [*(history or []), *new_turns]}

    for fn in (v1_generate, v1_edit, v1_chat):
        gr.api(fn, api_name=fn.__name__, **LANE_KWARGS)


TOOLS = ("v1_generate", "v1_edit", "v1_chat")
"""The endpoints offered as MCP tools (typed schemas from the signatures and docstrings above)."""


def mcp_tools_only(app: gr.Blocks) -> None:
    """Offer only :data:`TOOLS` to MCP clients; the tab events stay in the web API as they are."""
    for block_fn in app.fns.values():
        if block_fn.fn is not None and block_fn.api_name not in TOOLS:
            try:
                block_fn.fn._mcp_type = "none"  # gradio lists only functions whose type is "tool"
            except AttributeError:  # bound methods, builtins: not ours, nothing to hide
                pass
