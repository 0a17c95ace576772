"""Running requests from the UI: the lane, cancel, progress, streaming and user-facing errors.

Gradio's ``cancels=`` stops waiting for an event but cannot interrupt a thread that is inside a model,
so every run also gets a :class:`RunControl` registered under the browser session; the stop button
cancels it and the adapter stops at its next step, which frees the manager's lane.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from umm.control import RunControl
from umm.errors import UmmError
from umm.manager import ModelManager
from umm.types import EditRequest, GenerateRequest, ImageResult, UnderstandRequest
from umm.ui.gpu import on_gpu, spaces_module

log = logging.getLogger(__name__)

LANE = "accelerator"
"""The one concurrency id every model-touching event shares (with a limit of 1)."""

LANE_KWARGS: dict[str, Any] = {"concurrency_id": LANE, "concurrency_limit": 1}

ERROR_SECONDS = 12
"""Error toasts close by themselves, so one failed run does not follow the user from tab to tab."""

_MANAGERS: dict[int, ModelManager] = {}
"""Managers by id, so GPU-wrapped functions take only picklable arguments (ZeroGPU pickles them)."""


def register_manager(manager: ModelManager) -> int:
    _MANAGERS[id(manager)] = manager
    return id(manager)


class RunRegistry:
    """The live RunControl of each (browser session, tab), so a stop click can reach it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], RunControl] = {}

    @contextlib.contextmanager
    def track(self, request: gr.Request | None, slot: str, control: RunControl) -> Iterator[RunControl]:
        """Register ``control`` for the Stop button of (session, slot) while the block runs."""
        key = (_session(request), slot)
        with self._lock:
            self._runs[key] = control
        try:
            yield control
        finally:
            with self._lock:
                if self._runs.get(key) is control:
                    del self._runs[key]

    def cancel(self, request: gr.Request | None, slot: str) -> bool:
        with self._lock:
            control = self._runs.pop((_session(request), slot), None)
        if control is not None:
            control.cancel()
        return control is not None


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "-"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show every ``UmmError`` as-is; anything else is logged and shown as a short internal error."""
    try:
        yield
    except gr.Error:
        raise
    except UmmError as err:
        message = getattr(err, "short", None) or str(err)
        raise gr.Error(message, duration=ERROR_SECONDS, print_exception=False) from err
    except Exception as err:
        log.exception("unexpected error in a UI handler")
        raise gr.Error(f"Internal error ({type(err).__name__}): {err}", duration=ERROR_SECONDS,
                       print_exception=False) from err


def progress_control(manager: ModelManager, progress: gr.Progress | None, what: str) -> RunControl:
    """A RunControl whose per-step progress feeds the gradio progress bar."""

    def report(done: int, total: int, unit: str) -> None:
        if progress is not None:
            progress((done, total), desc=f"{what}: {unit}", unit=unit)

    return RunControl(time_limit_s=manager.time_limit_s, on_progress=report)


@on_gpu
def _execute(task: str, model_id: str, request: Any, manager_key: int, control: RunControl | None) -> ImageResult:
    manager = _MANAGERS[manager_key]
    if task == "generate":
        return manager.generate(model_id, request, control)
    if task == "edit":
        return manager.edit(model_id, request, control)
    raise ValueError(f"not an image task: {task}")


def run_images(
    manager: ModelManager, task: str, model_id: str, request: GenerateRequest | EditRequest, control: RunControl
) -> ImageResult:
    """Generate or edit through the manager (under ``spaces.GPU`` on ZeroGPU, where the control stays local)."""
    key = register_manager(manager)
    return _execute(task, model_id, request, key, None if spaces_module() else control)


@dataclasses.dataclass
class Running:
    """A snapshot of an image run: what the model has written so far, its step, and at the end the result."""

    text: str = ""
    done: int = 0
    total: int = 0
    unit: str = "steps"
    result: ImageResult | None = None


def stream_images(
    manager: ModelManager, task: str, model_id: str, request: GenerateRequest | EditRequest, control: RunControl,
    *, every_s: float = 0.25,
) -> Iterator[Running]:
    """Run an image task in a worker thread; yield snapshots while it runs (the written plan as it grows,
    the step), at most every ``every_s``, then one with the result.

    The control's own progress report (gradio's bar) keeps working: the worker runs in a copy of this
    context. If gradio abandons the generator (Stop, disconnect), the control is cancelled and the worker
    stops at its next step, as in :func:`stream_text`.
    """
    state = Running()
    lock = threading.Lock()
    changed, finished = threading.Event(), threading.Event()
    report = control.on_progress

    def on_text(chunk: str) -> None:
        with lock:
            state.text += chunk
        changed.set()

    def on_progress(done: int, total: int, unit: str) -> None:
        with lock:
            state.done, state.total, state.unit = done, total, unit
        changed.set()
        if report is not None:
            report(done, total, unit)

    control.on_text, control.on_progress = on_text, on_progress
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = run_images(manager, task, model_id, request, control)
        except BaseException as err:
            outcome["error"] = err
        finally:
            finished.set()
            changed.set()

    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name=f"umm-{task}-{model_id}",
                              daemon=True)
    worker.start()
    try:
        while True:
            changed.wait()
            if finished.is_set():
                break
            changed.clear()
            with lock:
                snapshot = dataclasses.replace(state)
            yield snapshot
            finished.wait(every_s)  # at most a few updates a second; the result comes at once
    finally:
        if not finished.is_set():  # abandoned mid-run (stop, disconnect): stop the worker at its next step
            control.cancel()
    if "error" in outcome:
        raise outcome["error"]
    yield dataclasses.replace(state, result=outcome["result"])


@on_gpu
def _understand(task: str, model_id: str, request: UnderstandRequest, manager_key: int, control: Any):
    yield from _MANAGERS[manager_key].understand(model_id, request, control)


_DONE = object()


def stream_text(
    manager: ModelManager, model_id: str, request: UnderstandRequest, control: RunControl
) -> Iterator[str]:
    """Stream a reply from a worker thread.

    The worker owns the manager's iterator (and so the lane). If gradio abandons this generator (stop,
    disconnect), closing it cancels the control and the worker stops at the next token.
    """
    chunks: queue.Queue[Any] = queue.Queue()
    key = register_manager(manager)

    def work() -> None:
        try:
            for chunk in _understand("understand", model_id, request, key, None if spaces_module() else control):
                chunks.put(chunk)
        except BaseException as err:
            chunks.put(err)
        finally:
            chunks.put(_DONE)

    worker = threading.Thread(target=work, name=f"umm-stream-{model_id}", daemon=True)
    worker.start()
    finished = False
    try:
        while True:
            item = chunks.get()
            if item is _DONE:
                finished = True
                return
            if isinstance(item, BaseException):
                finished = True
                raise item
            yield item
    finally:
        if not finished:  # abandoned mid-stream (stop, disconnect): stop the worker at its next token
            control.cancel()


def elapsed(started: float) -> float:
    return time.perf_counter() - started
