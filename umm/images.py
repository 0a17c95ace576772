"""Output images: PNGs that carry the settings that made them."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from umm.types import RunInfo

METADATA_KEY = "umm"


def png_info(info: RunInfo) -> PngImagePlugin.PngInfo:
    meta = PngImagePlugin.PngInfo()
    meta.add_text(METADATA_KEY, json.dumps(info.as_dict(), sort_keys=True))
    return meta


def save_png(image: Image.Image, path: Path | str, info: RunInfo) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=png_info(info))
    return path


def read_settings(path: Path | str) -> dict | None:
    """The settings embedded by :func:`save_png`, or None for other images."""
    with Image.open(path) as image:
        text = image.info.get(METADATA_KEY)
    return json.loads(text) if text else None
