"""Input checks shared by the tabs, and the gradio validators that run them before the queue.

Validators run in gradio before an event joins the queue, so a bad request never waits for the lane;
the handlers run the same checks again because they need the cleaned values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from umm.catalog import ModelSpec
from umm.errors import UmmError
from umm.inputs import check_prompt, open_image
from umm.manager import ModelManager
from umm.ui.params import FieldError

MAX_SEED = 2**31 - 1


def check_model(manager: ModelManager, model_id: Any, capability: str) -> ModelSpec:
    try:
        spec = manager.catalog.get(model_id)
        spec.capability(capability)
    except UmmError as err:
        raise FieldError("model_id", str(err)) from None
    return spec


def check_seed(seed: Any) -> int:
    """-1 (or empty) means random; otherwise a whole number in [0, 2^31-1]."""
    if seed is None or seed == "":
        return -1
    try:
        value = float(seed)
    except (TypeError, ValueError):
        raise FieldError("seed", f"Seed must be a whole number, got {seed!r}.") from None
    if not math.isfinite(value):
        raise FieldError("seed", f"Seed must be a whole number, got {seed!r}.")
    if value != int(value) or not (value == -1 or 0 <= value <= MAX_SEED):
        raise FieldError("seed", f"Seed must be -1 (random) or a whole number from 0 to {MAX_SEED}; got {seed!r}.")
    return int(value)


def check_text(text: Any, field: str, *, what: str, allow_empty: bool = False) -> str:
    try:
        return check_prompt(text, what=what, allow_empty=allow_empty)
    except UmmError as err:
        raise FieldError(field, str(err)) from None


def file_path(payload: Any) -> Any:
    """The server path of a file input, as gradio hands it over unprocessed (a FileData dict) or processed."""
    if isinstance(payload, dict):
        return payload.get("path") or payload.get("name")
    return getattr(payload, "path", None) or payload


def check_images(paths: Sequence[Any], field: str, max_bytes: int) -> list:
    images = []
    for path in paths:
        path = file_path(path)
        try:
            images.append(open_image(path, max_bytes=max_bytes))
        except UmmError as err:
            raise FieldError(field, str(err)) from None
    return images


def check_image_count(manager: ModelManager, model_id: str, capability: str, count: int, field: str) -> None:
    try:
        manager.catalog.get(model_id).capability(capability).check_images(count)
    except UmmError as err:
        raise FieldError(field, str(err)) from None


def validator(names: list[str], check: Callable[..., Any]) -> Callable[..., list[Any]]:
    """A gradio validator: runs ``check`` and marks the input the error is about (else the first)."""

    def validate(*args: Any, **kwargs: Any) -> list[Any]:
        try:
            check(*args, **kwargs)
        except FieldError as err:
            field = err.field if err.field in names else names[0]
            return [gr.validate(name != field, str(err) if name == field else "") for name in names]
        except UmmError as err:
            return [gr.validate(index != 0, str(err) if index == 0 else "") for index in range(len(names))]
        return [gr.validate(True, "") for _ in names]

    return validate
