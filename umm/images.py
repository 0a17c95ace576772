"""Output images: PNGs that carry the settings that made them."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from umm.types import RunInfo

METADATA_KEY = "umm"


A1111_KEY = "parameters"
"""The text chunk AUTOMATIC1111, ComfyUI importers, Civitai and image viewers read."""

# our parameter names -> the labels A1111-style readers know; the rest keep their own names
_A1111_LABELS = {
    "steps": "Steps", "cfg_weight": "CFG scale", "cfg_scale": "CFG scale", "guidance_scale": "CFG scale",
    "text_guidance_scale": "CFG scale", "cfg": "CFG scale", "temperature": "Temperature",
}


def png_info(info: RunInfo) -> PngImagePlugin.PngInfo:
    meta = PngImagePlugin.PngInfo()
    meta.add_text(METADATA_KEY, json.dumps(info.as_dict(), sort_keys=True))
    meta.add_text(A1111_KEY, a1111_parameters(info))
    return meta


def a1111_parameters(info: RunInfo) -> str:
    """The settings in A1111's plain-text form: prompt, "Negative prompt: …", then "Key: value, …"."""
    params = dict(info.params)
    fields: dict[str, object] = {}
    for name, label in _A1111_LABELS.items():
        if name in params and label not in fields:
            fields[label] = params.pop(name)
    fields["Seed"] = info.seed
    if "width" in params and "height" in params:
        fields["Size"] = f"{params.pop('width')}x{params.pop('height')}"
    fields["Model"] = info.model_id
    if info.revision:
        fields["Model hash"] = info.revision[:10]
    fields.update({name: value for name, value in params.items()})
    line = ", ".join(f"{key}: {str(value).replace(',', ';')}" for key, value in fields.items())
    negative = f"\nNegative prompt: {info.negative_prompt}" if info.negative_prompt else ""
    return f"{info.prompt}{negative}\n{line}"


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
