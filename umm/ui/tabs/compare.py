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
from umm.ui.arena import LETTERS, record_vote, votes_path
from umm.ui.context import UiContext, wire_stop
from umm.ui.page import reveal_after
from umm.ui.runs import LANE_KWARGS, Running, progress_control, stream_images, stream_text, user_errors

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
            per_model = gr.Slider(1, 4, value=1, step=1, label="Images per model", elem_id="cmp-per-model",
                                  info="For models that make several images per prompt.")
            anonymous = gr.Checkbox(False, label="Anonymous (arena): names hidden until you vote",
                                    elem_id="cmp-anonymous")
            with gr.Row():
                run = gr.Button("Compare", variant="primary", elem_id="cmp-run")
                stop = gr.Button("■ Stop", variant="stop", elem_id="cmp-stop")
    if ctx.examples.get("compare"):
        gr.Examples(ctx.examples["compare"], inputs=[prompt], label="Example prompts", cache_examples=False)
    cells: list[gr.components.Component] = []
    with gr.Row(equal_height=True, elem_id="cmp-columns"):
        for index in range(COLUMNS):
            with gr.Column(min_width=200, elem_id=f"cmp-col-{index}"):
                cells += [
                    gr.Markdown(f"*Column {index + 1}*", elem_id=f"cmp-title-{index}"),
                    gr.Gallery(label="Images", columns=2, height=240, format="png", elem_id=f"cmp-gallery-{index}",
                               visible=task0 != "understand"),
                    gr.Textbox(label="Reply", lines=6, elem_id=f"cmp-text-{index}", visible=task0 == "understand"),
                    gr.Markdown(elem_id=f"cmp-status-{index}"),
                ]
    zoom = gr.Button("⤢ Side by side · one zoom for all columns", size="sm", elem_id="cmp-zoom")
    zoom.click(None, None, None, js="() => window.ummSideBySide && window.ummSideBySide()", queue=False,
               api_visibility="private")
    with gr.Row(visible=False, elem_id="cmp-vote-row") as vote_row:
        vote = gr.Radio(["A", "B", "tie"], label="Which is better?", elem_id="cmp-vote", scale=3)
        cast = gr.Button("Vote and reveal", variant="primary", elem_id="cmp-cast", scale=1)
    verdict = gr.Markdown(elem_id="cmp-verdict")
    archive = gr.File(label="Export: ZIP of images + settings.json", elem_id="cmp-zip", height=90, interactive=False)
    last = gr.State(None)

    def on_task(task_name: str) -> list[Any]:
        """New task: its runnable models preselected, and the previous task's results cleared."""
        gallery = gr.update(visible=task_name != "understand", value=[])
        reply = gr.update(visible=task_name == "understand", value="")
        cells_updates = [u for i in range(COLUMNS) for u in (f"*Column {i + 1}*", gallery, reply, "")]
        return [gr.update(choices=info.choices(ctx.manager, task_name),
                          value=info.runnable_ids(ctx.manager, task_name, 2)),
                gr.update(visible=task_name != "generate"), *cells_updates]

    task.change(on_task, [task], [models, image, *cells], queue=False, api_visibility="private")

    names = ["task", "prompt", "image", "model_ids", "seed", "images_per_model", "anonymous"]

    def check(task, prompt, image, model_ids, seed, images_per_model=1, anonymous=False):
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
        if not isinstance(images_per_model, (int, float)) or not 1 <= images_per_model <= 4:
            raise checks.FieldError("images_per_model", f"Images per model must be 1 to 4; got {images_per_model!r}.")
        return text, images, checks.check_seed(seed), model_ids

    def compare(task, prompt, image, model_ids, seed, images_per_model=1, anonymous=False,
                request: gr.Request = None) -> Iterator[list[Any]]:
        with user_errors():
            text, images, seed, model_ids = check(task, prompt, image, model_ids, seed, images_per_model)
        if seed < 0:
            seed = random.randrange(0, checks.MAX_SEED)
        if anonymous:  # a random column order, so position tells nothing
            random.shuffle(model_ids)
        else:
            resident = ctx.manager.resident_id
            model_ids.sort(key=lambda m: m != resident)  # the resident model first: one swap fewer
        titles = [f"**Model {LETTERS[i]}**" if anonymous else f"**{m}**" for i, m in enumerate(model_ids)]
        state = [_blank(i, titles) for i in range(COLUMNS)]
        entries: list[tuple[str, list[str], dict | None, str]] = []
        columns: list[dict[str, Any]] = []
        hidden = gr.update(visible=False)

        def out(archive: Any = None, comparison: Any = None, voting: Any = hidden) -> list[Any]:
            return [*_flatten(state), archive, comparison, voting, ""]

        yield out()
        for index, model_id in enumerate(model_ids):
            state[index][3] = "… running"
            yield out()
            with ctx.runs.track(request, SLOT, progress_control(ctx.manager, None, model_id)) as control:
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
                            yield out()
                        settings = {"model_id": model_id, "task": task, "prompt": text, "seed": seed, "reply": reply}
                    else:
                        params = _per_model(ctx.manager.catalog.get(model_id).capability(task), int(images_per_model))
                        req = (GenerateRequest(text, params=params, seed=seed) if task == "generate"
                               else EditRequest(images, text, params=params, seed=seed))
                        for running in stream_images(ctx.manager, task, model_id, req, control):
                            if running.result is None:  # this column's own progress (and plan, if any)
                                state[index][3] = _running(running, time.perf_counter() - started)
                                yield out()
                                continue
                            result = running.result
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
            columns.append({"model_id": model_id, "settings": settings, "ok": status.startswith("✓")})
            yield out()
            if control.cancelled:
                break
        comparison = {"task": task, "prompt": text, "seed": seed, "columns": columns, "titles": titles}
        can_vote = anonymous and len(columns) == len(model_ids) and all(c["ok"] for c in columns)
        choices = [*LETTERS[: len(columns)], "tie"]
        voting = gr.update(visible=can_vote)
        yield [*_flatten(state), outputs.export_zip(entries), comparison, voting,
               "" if can_vote or not anonymous else "Some models failed: nothing to vote on."]
        if can_vote:
            gr.Info(f"Vote {', '.join(choices[:-1])} or tie to reveal the models.")

    event = run.click(
        compare, [task, prompt, image, models, seed, per_model, anonymous],
        [*cells, archive, last, vote_row, verdict], api_name="compare",
        validator=checks.validator(names, check), **LANE_KWARGS,
        show_progress="hidden",  # each column shows its own progress in its status line, not every column at once
    )
    event.then(lambda c: gr.update(choices=[*LETTERS[: len((c or {}).get("columns") or [])], "tie"], value=None),
               [last], [vote], queue=False, api_visibility="private")

    def cast_vote(comparison: dict | None, choice: str | None) -> list[Any]:
        if not comparison or not choice:
            raise gr.Error("Pick A, B … or tie first.")
        try:
            line = record_vote(comparison, choice)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        reveal = [f"**{LETTERS[i]} = {c['model_id']}**" for i, c in enumerate(comparison["columns"])]
        titles = [gr.update(value=reveal[i]) if i < len(reveal) else gr.update() for i in range(COLUMNS)]
        text = f"Recorded your vote ({line['vote']}) in `{votes_path()}`: " + ", ".join(
            r.strip("*") for r in reveal)
        return [*titles, gr.update(visible=False), text]

    cast.click(cast_vote, [last, vote], [*cells[0::4], vote_row, verdict], queue=False, api_name="compare_vote")

    wire_stop(ctx, stop, SLOT, [event], "compare_stop")
    reveal_after([event], "cmp-columns")


def _per_model(capability, images: int) -> dict[str, Any]:
    """The common "images per model", for models that have a ``num_images`` control (within its range)."""
    param = next((p for p in capability.params if p.name == "num_images"), None)
    if param is None:
        return {}
    return {"num_images": int(min(max(images, param.min or 1), param.max or images))}


def _running(running: Running, seconds: float) -> str:
    return outputs.running_status(running.text, running.done, running.total, running.unit, seconds)


def _blank(index: int, titles: list[str]) -> list[Any]:
    if index < len(titles):
        return [titles[index], [], "", "· waiting"]
    return [f"*Column {index + 1}: not used*", [], "", ""]


def _flatten(state: list[list[Any]]) -> list[Any]:
    return [value for column in state for value in column]
