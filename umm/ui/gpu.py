"""Optional ZeroGPU support: wrap GPU work with ``spaces.GPU`` when the package is importable.

On a ZeroGPU Space the accelerator is attached only inside decorated calls, so every call that touches
a model goes through :func:`on_gpu`. Elsewhere the functions run unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Seconds per unit of work on a ZeroGPU slice (H200 class), generous so a run is not cut short.
BASE_S = 20
PER_IMAGE_STEP_S = 0.04  # one image token / denoising step of one image
PER_TOKEN_S = 0.05
MAX_S = 300


@functools.lru_cache(maxsize=1)
def spaces_module() -> Any | None:
    """The ``spaces`` package, or None when not running where it is installed."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def estimate_duration(task: str, params: dict[str, Any]) -> int:
    """A ZeroGPU time budget from the request: more images, steps or tokens need longer."""
    if task == "understand":
        work = PER_TOKEN_S * float(params.get("max_new_tokens") or 512)
    else:
        steps = float(params.get("num_inference_steps") or params.get("steps") or 576)
        work = PER_IMAGE_STEP_S * steps * float(params.get("num_images") or 1)
    return int(min(MAX_S, BASE_S + work))


def on_gpu(fn: F) -> F:
    """Decorate ``fn(task, model_id, request, ...)`` with ``spaces.GPU`` and a request-derived duration."""
    spaces = spaces_module()
    if spaces is None:
        return fn

    def duration(task: str, model_id: str, request: Any, *args: Any, **kwargs: Any) -> int:
        return estimate_duration(task, getattr(request, "params", {}) or {})

    log.info("ZeroGPU detected: %s runs under spaces.GPU", fn.__name__)
    return spaces.GPU(duration=duration)(fn)  # type: ignore[return-value]
