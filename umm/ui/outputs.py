"""What a run leaves behind: PNGs carrying their settings, a reproducible API call, ZIP exports."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from umm.images import save_png
from umm.types import ImageResult, RunInfo

OUTPUT_ROOT = Path(tempfile.gettempdir()) / "umm-outputs"


KEEP_SECONDS = 86400
"""Request folders older than this are removed (checked at most hourly), so a long-running app stays small."""
_last_prune = 0.0


def request_dir() -> Path:
    """A fresh directory per request, so concurrent sessions never overwrite each other's files."""
    prune_outputs()
    path = OUTPUT_ROOT / uuid.uuid4().hex
    path.mkdir(parents=True, exist_ok=True)
    return path


def prune_outputs(now: float | None = None, *, force: bool = False) -> int:
    """Delete request folders older than ``KEEP_SECONDS``; returns how many went."""
    global _last_prune
    now = time.time() if now is None else now
    if not force and now - _last_prune < 3600:
        return 0
    _last_prune = now
    removed = 0
    for folder in OUTPUT_ROOT.glob("*") if OUTPUT_ROOT.is_dir() else ():
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > KEEP_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


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
    notes = "".join(f"\n\n⚠ {note}" for note in info.notes)
    return f"✓ {what}{seconds:.1f} s · seed **{info.seed}** · `{info.model_id}`{notes}{plan(info.text)}"


def plan(text: str) -> str:
    """The model's written plan (e.g. Bagel's thinking) as a quote under the result; empty without one."""
    quoted = "\n".join(f"> {line}" for line in text.splitlines())
    return f"\n\n**The model's plan**\n\n{quoted}" if text.strip() else ""


def running_status(text: str, done: int, total: int, unit: str, seconds: float) -> str:
    """The status line of a run still going: time, step count with a small bar, and a plan being written.

    gradio's own progress bar gives way to a generator's first update, so once a plan streams (and in
    Compare's columns) this line carries the progress.
    """
    line = f"◐ {seconds:.1f} s"
    if total:
        filled = max(0, min(10, round(10 * done / total)))
        line += f" · {done}/{total} {unit} {'▰' * filled}{'▱' * (10 - filled)}"
    elif text:
        line += " · writing its plan…"
    return line + plan(text)


def api_snippet(
    url: str, api_name: str, info: dict[str, Any], image_args: dict[str, str | list[str] | None] | None = None
) -> str:
    """A gradio_client call that reproduces ``info`` (the dict of ``RunInfo.as_dict()``).

    ``image_args`` maps an input name to the app's file(s) of this run (paths the app already serves);
    they become download URLs of this app, so the snippet runs as it is, from any machine that can
    reach the app. Every model parameter is passed, so it reproduces the run even if defaults change.
    """
    args: dict[str, Any] = {"model_id": info["model_id"]}
    if info.get("task") == "edit":
        args["instruction"] = info.get("prompt", "")
    else:
        args["prompt"] = info.get("prompt", "")
    if info.get("negative_prompt"):
        args["negative_prompt"] = info["negative_prompt"]
    args["seed"] = info["seed"]
    args.update(info.get("params") or {})
    lines = ["from gradio_client import Client, handle_file", ""]
    if any(image_args.values() if image_args else ()):
        lines[:1] = [  # gradio refuses URL inputs that point at a private host, so fetch them here first
            "import tempfile", "import urllib.request", "", "from gradio_client import Client, handle_file", "", "",
            "def app_file(url):  # an input image of this run, as the app serves it",
            "    path = tempfile.mkstemp(suffix='.png')[1]", "    urllib.request.urlretrieve(url, path)",
            "    return handle_file(path)", "", "",
        ]
    lines += [f"client = Client({url!r})", "result = client.predict("]
    for name, paths in (image_args or {}).items():
        if isinstance(paths, list):
            files = ", ".join(f"app_file({file_url(url, p)!r})" for p in paths)
            lines.append(f"    {name}=[{files}]," if paths else f"    {name}=None,")
        elif paths is None:
            lines.append(f"    {name}=None,")
        else:
            lines.append(f"    {name}=app_file({file_url(url, paths)!r}),")
    lines += [f"    {name}={value!r}," for name, value in args.items()]
    lines += [f"    api_name={api_name!r},", ")", "print(result)"]
    return "\n".join(lines)


def file_url(base: str, path: str) -> str:
    """The URL under which a gradio app serves one of its (cached) files."""
    if "://" not in base:  # a Space id: its direct URL
        base = f"https://{base.replace('/', '-').lower()}.hf.space/"
    return f"{base.rstrip('/')}/gradio_api/file={path}"


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
