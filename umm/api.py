"""The Python API: ``umm.load("janus-pro-1b")`` returns a handle with the same typed methods.

Handles share one manager per process by default, so holding several handles still keeps exactly one
model resident; calling a method swaps as needed. With ``UMM_BACKEND=ray`` (or ``backend=`` of
:func:`default_manager`) the same handles run on a Ray Serve deployment of managers instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image

from umm.catalog import Catalog, load_app_config, load_catalog
from umm.control import RunControl
from umm.manager import ModelManager
from umm.serve.backend import Backend, make_backend
from umm.types import EditRequest, GenerateRequest, ImageResult, Message, UnderstandRequest

DEMO_ENV = "UMM_DEMO"


def full_catalog(demo: bool | None = None, tiny_root: Path | None = None) -> Catalog:
    """The real catalog, plus the tiny random-weight twins when demo mode is on."""
    catalog = load_catalog()
    if demo is None:
        demo = os.environ.get(DEMO_ENV, "") not in ("", "0", "false")
    if demo:
        from umm.tiny import build_tiny_catalog, default_tiny_root

        for spec in build_tiny_catalog(catalog, tiny_root or default_tiny_root()):
            catalog.add(spec)
    return catalog


@functools.lru_cache(maxsize=1)
def default_manager(demo: bool = False, backend: str | None = None) -> ModelManager | Backend:
    """The process's manager (or Ray backend: ``backend="ray"`` or ``$UMM_BACKEND``), made on first use."""
    return make_backend(full_catalog(demo), load_app_config(), backend)


class Model:
    """A model id bound to a manager; every call goes through the manager's lane."""

    def __init__(self, model_id: str, manager: ModelManager | Backend) -> None:
        self.spec = manager.catalog.get(model_id)
        self.manager = manager

    @property
    def id(self) -> str:
        return self.spec.id

    def stream(
        self,
        messages: Sequence[Message],
        *,
        seed: int | None = None,
        control: RunControl | None = None,
        **params,
    ) -> Iterator[str]:
        request = UnderstandRequest(list(messages), params=params, seed=seed)
        return self.manager.understand(self.id, request, control)

    def chat(self, text: str, images: Sequence[Image.Image] = (), *, seed: int | None = None, **params) -> str:
        return "".join(self.stream([Message("user", text, list(images))], seed=seed, **params))

    def generate(
        self, prompt: str, *, negative_prompt: str = "", seed: int | None = None, **params
    ) -> ImageResult:
        request = GenerateRequest(prompt, negative_prompt=negative_prompt, params=params, seed=seed)
        return self.manager.generate(self.id, request)

    def edit(
        self,
        images: Image.Image | Sequence[Image.Image],
        instruction: str,
        *,
        negative_prompt: str = "",
        seed: int | None = None,
        **params,
    ) -> ImageResult:
        images = [images] if isinstance(images, Image.Image) else list(images)
        request = EditRequest(images, instruction, negative_prompt=negative_prompt, params=params, seed=seed)
        return self.manager.edit(self.id, request)

    def __repr__(self) -> str:
        return f"Model({self.id!r}, status={self.manager.status(self.id)!r})"


def load(model_id: str, *, manager: ModelManager | Backend | None = None, demo: bool | None = None) -> Model:
    """Resolve ``model_id`` and make it resident; ids starting with ``tiny-`` switch demo mode on."""
    if manager is None:
        manager = default_manager(bool(demo) or model_id.startswith("tiny-"))
    model = Model(model_id, manager)
    manager.load(model_id)
    return model
