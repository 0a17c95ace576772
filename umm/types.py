"""Typed requests and results shared by every adapter, the manager, the UI and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image


@dataclass
class Message:
    """One chat turn; user turns may carry images."""

    role: Literal["user", "assistant"]
    text: str
    images: list[Image.Image] = field(default_factory=list)


@dataclass
class UnderstandRequest:
    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class GenerateRequest:
    prompt: str
    negative_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class EditRequest:
    images: list[Image.Image]
    instruction: str
    negative_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class RunInfo:
    """What produced a result: enough to reproduce it."""

    model_id: str
    revision: str | None
    task: str
    seed: int
    params: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    prompt: str = ""
    negative_prompt: str = ""
    notes: list[str] = field(default_factory=list)  # what the request asked for that this model did not use
    text: str = ""  # text the model wrote on the way to the images (e.g. a plan), shown with the result

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "task": self.task,
            "seed": self.seed,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "params": dict(self.params),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            **({"text": self.text} if self.text else {}),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


@dataclass
class ImageResult:
    images: list[Image.Image]
    info: RunInfo


@dataclass
class TextResult:
    text: str
    info: RunInfo


Task = Literal["understand", "generate", "edit"]
