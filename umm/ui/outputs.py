"""What a run leaves behind: PNGs carrying their settings, a reproducible API call, ZIP exports."""

from __future__ import annotations

import json
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

from umm.images import save_png
from umm.types import ImageResult, RunInfo

OUTPUT_ROOT = Path(tempfile.gettempdir()) / "umm-outputs"


def request_dir() -> Path:
    """A fresh directory per request, so concurrent sessions never overwrite each other's files."""
    path = OUTPUT_ROOT / uuid.uuid4().hex
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_result(result: ImageResult, directory: Path | None = None, stem: str | None = None) -> list[str]:
    """Write each image as a PNG with the full settings embedded; returns the paths."""
    directory = directory or request_dir()
    stem = stem or f"{result.info.model_id}-{result.info.seed}"
    return [
        str(save_png(image, directory / f"{stem}-{index + 1}.png", result.info))
        for index, image in enumerate(result.images)
    ]


def summary(info: RunInfo, seconds: float, n_images: int | None = None) -> str:
    """One line under the output: time, seed and model."""
    what = f"{n_images} image{'s' if n_images != 1 else ''} · " if n_images is not None else ""
    return f"✅ {what}{seconds:.1f} s · seed **{info.seed}** · `{info.model_id}`"


def api_snippet(url: str, api_name: str, info: dict[str, Any], image_args: dict[str, str] | None = None) -> str:
    """A gradio_client call that reproduces ``info`` (the dict of ``RunInfo.as_dict()``)."""
    args: dict[str, Any] = {"model_id": info["model_id"]}
    if info.get("task") == "edit":
        args["instruction"] = info.get("prompt", "")
    else:
        args["prompt"] = info.get("prompt", "")
    if info.get("negative_prompt"):
        args["negative_prompt"] = info["negative_prompt"]
    args["seed"] = info["seed"]
    args.update(info.get("params") or {})
    lines = ["from gradio_client import Client, handle_file", "", f"client = Client({url!r})"]
    lines.append("result = client.predict(")
    for name, path in (image_args or {}).items():
        lines.append(f"    {name}=handle_file({path!r}),")
    lines += [f"    {name}={value!r}," for name, value in args.items()]
    lines += [f"    api_name={api_name!r},", ")", "print(result)"]
    return "\n".join(lines)


def export_zip(entries: list[tuple[str, list[str], dict[str, Any] | None, str]]) -> str:
    """ZIP of (name, image paths, settings, status) per column plus a settings.json index."""
    directory = request_dir()
    path = directory / "umm-compare.zip"
    index = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, images, settings, status in entries:
            files = []
            for image in images:
                arcname = f"{name}/{Path(image).name}"
                archive.write(image, arcname)
                files.append(arcname)
            index.append({"model_id": name, "status": status, "settings": settings, "files": files})
        archive.writestr("settings.json", json.dumps(index, indent=2, sort_keys=True))
    return str(path)
