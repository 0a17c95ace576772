"""Example prompts and images for every tab (shown, never run at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def asset(name: str) -> str | None:
    path = ASSETS / name
    return str(path) if path.is_file() else None


def examples() -> dict[str, list[list[Any]]]:
    cat, landscape, shapes = asset("cat.png"), asset("landscape.png"), asset("shapes.png")
    world = asset("shapes-world.png")  # the offline Shapes Janus's toy world: it answers and draws these
    chat = [[{"text": text, "files": [world]}] for text in ("what colour is the square?", "how many shapes are there?")
            if world]
    chat += [[{"text": "What is in this picture?", "files": [p]}] for p in (cat, shapes) if p]
    chat.append([{"text": "Write a haiku about a city at night.", "files": []}])
    prompts = [
        ["a red circle at the top left and a large blue square at the center"],
        ["a watercolor painting of a lighthouse at sunset"],
        ["a photo of a cat sitting on a red chair"],
        ["an isometric pixel-art city at night, neon lights"],
    ]
    edit = [[p, instruction] for p, instruction in ((landscape, "make it a snowy winter scene"),
                                                     (cat, "turn the cat orange")) if p]
    return {"chat": chat, "generate": prompts, "edit": edit, "compare": prompts[:2]}
