"""Cooperative control of one run: cancel, time limit and progress.

Adapters call ``control.step(done, total)`` once per token or denoising step; that single call both
reports progress and is the point where a cancelled or overdue run stops, so the lane frees within one
step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from umm.errors import CancelledError, TimeLimitError

ProgressFn = Callable[[int, int, str], None]
TextFn = Callable[[str], None]


class RunControl:
    def __init__(
        self,
        *,
        time_limit_s: float | None = None,
        on_progress: ProgressFn | None = None,
        on_text: TextFn | None = None,
    ) -> None:
        self._cancel = threading.Event()
        self.time_limit_s = time_limit_s
        self.on_progress = on_progress
        self.on_text = on_text
        self.started = time.monotonic()
        self.steps = 0

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def restart_clock(self) -> None:
        """Start the time limit now: queueing and loading are not the request's fault."""
        self.started = time.monotonic()

    def check(self) -> None:
        if self._cancel.is_set():
            raise CancelledError("Stopped: the request was cancelled.")
        if self.time_limit_s is not None and time.monotonic() - self.started > self.time_limit_s:
            raise TimeLimitError(
                f"Stopped: the request took longer than the {self.time_limit_s:g} s limit. "
                "Try fewer steps, fewer images or a smaller size."
            )

    def step(self, done: int, total: int, what: str = "steps") -> None:
        self.steps += 1
        self.check()
        if self.on_progress is not None:
            self.on_progress(done, total, what)

    def text(self, chunk: str) -> None:
        """A piece of text the model writes on the way to its images (e.g. a plan), so it can be shown live."""
        if self.on_text is not None:
            self.on_text(chunk)


def default_control() -> RunControl:
    return RunControl()
