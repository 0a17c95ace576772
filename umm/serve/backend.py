"""The one interface the UI, the CLI and the Python API call, and the switch between its two implementations.

:class:`umm.manager.ModelManager` *is* the in-process backend: it already has exactly this surface, so the
default path is unchanged. :class:`umm.serve.ray_backend.RayBackend` implements the same surface over a Ray
Serve deployment whose replicas each run a ``ModelManager``.

Stop works the same way on both: every call takes the caller's :class:`~umm.control.RunControl`, and
``control.cancel()`` stops the run wherever it executes (the Ray backend forwards it to the replica).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from umm.catalog import Catalog
from umm.control import RunControl
from umm.errors import InputError
from umm.types import EditRequest, GenerateRequest, ImageResult, UnderstandRequest

BACKEND_ENV = "UMM_BACKEND"
BACKENDS = ("local", "ray")


@runtime_checkable
class Backend(Protocol):
    """generate / edit / understand-stream / status, plus load/unload; cancel = ``control.cancel()``."""

    catalog: Catalog
    time_limit_s: float | None

    @property
    def resident_id(self) -> str | None: ...

    @property
    def queue_depth(self) -> int: ...

    def status(self, model_id: str) -> str:
        """resident | cached in RAM | on disk | not downloaded | unavailable: <reason>."""
        ...

    def load(self, model_id: str) -> None: ...

    def unload(self) -> None: ...

    def generate(self, model_id: str, request: GenerateRequest, control: RunControl | None = None) -> ImageResult: ...

    def edit(self, model_id: str, request: EditRequest, control: RunControl | None = None) -> ImageResult: ...

    def understand(
        self, model_id: str, request: UnderstandRequest, control: RunControl | None = None
    ) -> Iterator[str]: ...


def backend_kind(kind: str | None = None) -> str:
    """``kind``, else ``$UMM_BACKEND``, else ``local``; anything else is a clear error."""
    kind = (kind or os.environ.get(BACKEND_ENV) or "local").strip().lower()
    if kind not in BACKENDS:
        raise InputError(f"Unknown backend {kind!r}: choose one of {', '.join(BACKENDS)} (or set {BACKEND_ENV}).")
    return kind


def make_backend(catalog: Catalog, config: dict[str, Any], kind: str | None = None, **overrides: Any) -> Backend:
    """The in-process manager, or a handle on the Ray deployment (connected, or started locally)."""
    if backend_kind(kind) == "ray":
        from umm.serve.ray_backend import connect

        return connect(catalog, config, **overrides)
    from umm.manager import manager_from_config

    return manager_from_config(catalog, config, **overrides)
