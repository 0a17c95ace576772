"""Image runs as generator events: the model's written plan streams live, each Compare column shows its own
progress, and Stop, the final images and the API results stay what they were."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

gradio = pytest.importorskip("gradio")
from conftest import cheap_params, free_port  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from umm.control import RunControl  # noqa: E402
from umm.manager import ModelManager  # noqa: E402
from umm.types import EditRequest, GenerateRequest, ImageResult, RunInfo  # noqa: E402
from umm.ui import runs  # noqa: E402

BAGEL = "tiny-bagel"
THINK = {"think": True, "max_think_tokens": 16}


@pytest.fixture(scope="module")
def slow_plan():
    """The tiny Bagel writes its plan in a blink; a pause per piece makes the live updates observable."""
    from umm.adapters.bagel import BagelAdapter

    original = BagelAdapter._stream

    def slowly(self, *args, **kwargs):
        for chunk in original(self, *args, **kwargs):
            time.sleep(0.05)
            yield chunk

    BagelAdapter._stream = slowly
    try:
        yield
    finally:
        BagelAdapter._stream = original


@pytest.fixture(scope="module")
def served(tiny_catalog, slow_plan):
    from umm.ui.app import build_app, launch_kwargs

    manager = ModelManager(tiny_catalog, device="cpu")
    app = build_app(manager)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
               **launch_kwargs(20_000_000))
    try:
        yield app, manager, Client(app.local_url, verbose=False)
    finally:
        app.close()


def _pixels(path: str):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_bagel_hands_its_plan_to_the_control_as_it_writes(manager: ModelManager, tiny_catalog) -> None:
    chunks: list[str] = []
    params = {**cheap_params(tiny_catalog.get(BAGEL), "generate"), **THINK}
    result = manager.generate(BAGEL, GenerateRequest("a cat", params=params, seed=3), RunControl(on_text=chunks.append))
    assert len(chunks) > 1 and "".join(chunks) == result.info.text


@pytest.mark.parametrize("task", ["generate", "edit"])
def test_the_plan_streams_while_it_is_written_and_the_result_is_unchanged(served, tiny_catalog, task) -> None:
    _, manager, client = served
    params = {**cheap_params(tiny_catalog.get(BAGEL), task), **THINK}
    if task == "generate":
        job = client.submit(model_id=BAGEL, prompt="a red cube", seed=5, api_name="/generate", **params)
        summaries = [out[1] for out in job]
        final = job.outputs()[-1]
        images, summary, settings = final[0], final[1], final[2]
        direct = manager.generate(BAGEL, GenerateRequest("a red cube", params=params, seed=5))
    else:
        from pathlib import Path

        from umm.inputs import open_image

        picture = Path(__file__).resolve().parents[1] / "assets" / "landscape.png"
        job = client.submit(model_id=BAGEL, image=handle_file(picture), extra_images=None,
                            instruction="make it blue", seed=5, api_name="/edit", **params)
        summaries = [out[2] for out in job]
        final = job.outputs()[-1]
        images, summary, settings = final[1], final[2], final[3]
        direct = manager.edit(BAGEL, EditRequest([open_image(picture)], "make it blue", params=params, seed=5))
    writing = [s for s in summaries[:-1] if s and s.startswith("◐")]
    assert writing, summaries  # the plan showed while the model was still running
    assert all("The model's plan" in s for s in writing)
    # the live line carries the progress as well (gradio's bar gives way to the first streamed update)
    assert any(re.search(r"\d+/\d+ (tokens|steps) [▰▱]{10}", s) for s in writing), writing
    assert summary.startswith("✓") and "The model's plan" in summary
    # the final result is the one a direct run gives: the same plan and the same pixels
    assert settings["text"] == direct.info.text
    path = images[0]["image"] if isinstance(images[0], dict) else images[0]
    assert np.array_equal(_pixels(path), np.asarray(direct.images[0].convert("RGB")))


class _SlowManager:
    """A stand-in manager whose image run takes 40 steps of 20 ms and honours the control."""

    time_limit_s = None

    def __init__(self) -> None:
        self.stopped_at: int | None = None
        self.finished = threading.Event()

    def generate(self, model_id, request, control):
        try:
            for step in range(40):
                time.sleep(0.02)
                control.text(f"{step} ")
                control.step(step + 1, 40)
            from PIL import Image

            return ImageResult([Image.new("RGB", (8, 8))], RunInfo(model_id, None, "generate", 1, {}))
        except Exception:
            self.stopped_at = control.steps
            raise
        finally:
            self.finished.set()


def test_stream_images_reports_steps_and_text_then_the_result() -> None:
    manager = _SlowManager()
    reported: list[tuple[int, int]] = []
    control = RunControl(on_progress=lambda done, total, unit: reported.append((done, total)))
    snapshots = list(runs.stream_images(manager, "generate", "m", GenerateRequest("x"), control, every_s=0.05))
    *live, last = snapshots
    assert last.result is not None and last.text.startswith("0 1 2") and last.done == 40
    assert 3 <= len(live) <= 40 and all(s.result is None for s in live)
    assert [s.done for s in live] == sorted(s.done for s in live) and live[0].done < 40
    assert len(reported) == 40  # the control's own progress report (gradio's bar) still sees every step


def test_abandoning_the_stream_stops_the_run_at_its_next_step() -> None:
    manager = _SlowManager()
    control = RunControl()
    stream = runs.stream_images(manager, "generate", "m", GenerateRequest("x"), control, every_s=0.01)
    next(stream)
    stream.close()  # what gradio does on Stop or a disconnect
    assert manager.finished.wait(2)
    assert control.cancelled and manager.stopped_at is not None and manager.stopped_at < 40


def test_compare_columns_show_their_own_progress(served) -> None:
    from umm.ui.tabs.compare import _running

    line = _running(runs.Running(text="a plan", done=3, total=10), 1.25)
    assert line.startswith("◐ 1.2 s · 3/10 steps ▰▰▰▱▱▱▱▱▱▱") and "a plan" in line
    app, _, _ = served
    compare = next(fn for fn in app.fns.values() if fn.api_name == "compare")
    assert compare.show_progress == "hidden"  # no overlay over every column; the running one says it
