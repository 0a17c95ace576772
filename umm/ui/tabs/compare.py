"""Compare: one prompt to 2–4 models with the same seed, one after another through the lane.

Each column fills in as its model finishes and carries its own time and error, so one failing model
never hides the others' results. Everything can be exported as a ZIP of PNGs and settings.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from umm.errors import UmmError
from umm.types import EditRequest, GenerateRequest, Message, UnderstandRequest
from umm.ui import checks, info, outputs
from umm.ui.context import UiContext, wire_stop
from umm.ui.runs import LANE_KWARGS, progress_control, run_images, stream_text, user_errors

SLOT = "compare"
COLUMNS = 4
TASKS = [("Text → image", "generate"), ("Chat / VQA", "understand"), ("Edit", "edit")]


def build(ctx: UiContext, app: gr.Blocks) -> None:
    task0 = next((t for _, t in TASKS if len(ctx.manager.catalog.ids(t)) >= 1), "generate")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            task = gr.Radio(TASKS, value=task0, label="Task", elem_id="cmp-task")
            prompt = gr.Textbox(label="Prompt / question / instruction", lines=2, elem_id="cmp-prompt")
            models = gr.CheckboxGroup(
                info.choices(ctx.manager, task0), value=info.runnable_ids(ctx.manager, task0, 2),
                label="Models (2–4, same seed, run one after another)", elem_id="cmp-models",
            )
        with gr.Column(scale=1, min_width=220):
            image = gr.Image(label="Image (chat / edit)", type="filepath", elem_id="cmp-image", height=180,
                             visible=task0 != "generate")
            seed = gr.Number(-1, label="Seed", info="-1 = one random seed for all", precision=0, elem_id="cmp-seed")
            with gr.Row():
                run = gr.Button("Compare", variant="primary", elem_id="cmp-run")
                stop = gr.Button("■ Stop", variant="stop", elem_id="cmp-stop")
    if ctx.examples.get("compare"):
        gr.Examples(ctx.examples["compare"], inputs=[prompt], label="Example prompts", cache_examples=False)
    cells: list[gr.components.Component] = []
    with gr.Row(equal_height=True):
        for index in range(COLUMNS):
            with gr.Column(min_width=200, elem_id=f"cmp-col-{index}"):
                cells += [
                    gr.Markdown(f"*Column {index + 1}*", elem_id=f"cmp-title-{index}"),
                    gr.Gallery(label="Images", columns=2, height=240, format="png", elem_id=f"cmp-gallery-{index}",
                               visible=task0 != "understand"),
                    gr.Textbox(label="Reply", lines=6, elem_id=f"cmp-text-{index}", visible=task0 == "understand"),
                    gr.Markdown(elem_id=f"cmp-status-{index}"),
                ]
    archive = gr.File(label="Export: ZIP of images + settings.json", elem_id="cmp-zip", height=90, interactive=False)

    def on_task(task_name: str) -> list[Any]:
        """New task: its runnable models preselected, and the previous task's results cleared."""
        gallery = gr.update(visible=task_name != "understand", value=[])
        reply = gr.update(visible=task_name == "understand", value="")
        cells_updates = [u for i in range(COLUMNS) for u in (f"*Column {i + 1}*", gallery, reply, "")]
        return [gr.update(choices=info.choices(ctx.manager, task_name),
                          value=info.runnable_ids(ctx.manager, task_name, 2)),
                gr.update(visible=task_name != "generate"), *cells_updates]

    task.change(on_task, [task], [models, image, *cells], queue=False, api_visibility="private")

    names = ["task", "prompt", "image", "model_ids", "seed"]

    def check(task, prompt, image, model_ids, seed) -> tuple[str, list, int, list[str]]:
        if task not in {t for _, t in TASKS}:
            raise checks.FieldError("task", f"Task must be one of generate, understand, edit; got {task!r}.")
        model_ids = list(dict.fromkeys(model_ids or []))
        if not 2 <= len(model_ids) <= COLUMNS:
            raise checks.FieldError("model_ids", f"Pick 2 to {COLUMNS} different models; got {len(model_ids)}.")
        for model_id in model_ids:
            try:
                checks.check_model(ctx.manager, model_id, task)
            except checks.FieldError as err:
                raise checks.FieldError("model_ids", str(err)) from None
        text = checks.check_text(prompt, "prompt", what="prompt")
        if task == "edit" and not image:
            raise checks.FieldError("image", "Editing needs an input image.")
        images = checks.check_images([image] if image else [], "image", ctx.max_upload_bytes)
        return text, images, checks.check_seed(seed), model_ids

    def compare(task, prompt, image, model_ids, seed, progress: gr.Progress = gr.Progress(),
                request: gr.Request = None) -> Iterator[list[Any]]:
        with user_errors():
            text, images, seed, model_ids = check(task, prompt, image, model_ids, seed)
        if seed < 0:
            seed = random.randrange(0, checks.MAX_SEED)
        resident = ctx.manager.resident_id
        model_ids.sort(key=lambda m: m != resident)  # the resident model first: one swap fewer
        state = [_blank(i, model_ids) for i in range(COLUMNS)]
        entries: list[tuple[str, list[str], dict | None, str]] = []
        yield [*_flatten(state), None]
        for index, model_id in enumerate(model_ids):
            state[index][3] = "… running"
            yield [*_flatten(state), None]
            with ctx.runs.track(request, SLOT, progress_control(ctx.manager, progress, model_id)) as control:
                started = time.perf_counter()
                paths: list[str] = []
                settings: dict | None = None
                try:
                    if task == "understand":
                        req = UnderstandRequest([Message("user", text, images)], seed=seed)
                        reply = ""
                        for chunk in stream_text(ctx.manager, model_id, req, control):
                            reply += chunk
                            state[index][2] = reply
                            yield [*_flatten(state), None]
                        settings = {"model_id": model_id, "task": task, "prompt": text, "seed": seed, "reply": reply}
                    else:
                        req = (GenerateRequest(text, seed=seed) if task == "generate"
                               else EditRequest(images, text, seed=seed))
                        result = run_images(ctx.manager, task, model_id, req, control)
                        paths = outputs.save_result(result)
                        settings = result.info.as_dict()
                        state[index][1] = paths
                    status = f"✓ {time.perf_counter() - started:.1f} s · seed {seed}"
                except UmmError as err:
                    status = f"✗ {err}"
                except Exception as err:  # one failing model must not break the other columns
                    status = f"✗ internal error ({type(err).__name__}): {err}"
            if control.cancelled:
                status = "■ stopped"
            state[index][3] = status
            entries.append((model_id, paths, settings, status))
            yield [*_flatten(state), None]
            if control.cancelled:
                break
        yield [*_flatten(state), outputs.export_zip(entries)]

    event = run.click(
        compare, [task, prompt, image, models, seed], [*cells, archive], api_name="compare",
        validator=checks.validator(names, check), **LANE_KWARGS,
    )

    wire_stop(ctx, stop, SLOT, [event], "compare_stop")


def _blank(index: int, model_ids: list[str]) -> list[Any]:
    if index < len(model_ids):
        return [f"**{model_ids[index]}**", [], "", "· waiting"]
    return [f"*Column {index + 1}: not used*", [], "", ""]


def _flatten(state: list[list[Any]]) -> list[Any]:
    return [value for column in state for value in column]
