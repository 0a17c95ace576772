"""Text to image: the model's own controls, seed, gallery, PNG metadata, reuse and copy-as-API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from umm.types import GenerateRequest
from umm.ui import checks, outputs
from umm.ui.context import (
    UiContext,
    base_url,
    model_picker,
    render_controls,
    uses_negative,
    wire_picker,
    wire_reuse,
    wire_stop,
)
from umm.ui.history import history_strip, record
from umm.ui.page import reveal_after
from umm.ui.runs import LANE_KWARGS, progress_control, stream_images, user_errors

SLOT = "generate"


def _index(evt: gr.SelectData) -> int:
    return evt.index


def build(ctx: UiContext, app: gr.Blocks) -> dict[str, Any]:
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            picker = model_picker(ctx, "generate", "gen")
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="gen-prompt", placeholder="Describe the image…")
            negative = gr.Textbox(
                label="Negative prompt", value="", lines=1, elem_id="gen-negative",
                visible=uses_negative(ctx.manager, picker.dropdown.value),
            )
            seed = render_controls(picker, "gen", open=True)
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="gen-run", scale=3)
                stop = gr.Button("■ Stop", variant="stop", elem_id="gen-stop", scale=1)
            if ctx.examples.get("generate"):
                gr.Examples(ctx.examples["generate"], inputs=[prompt], label="Example prompts", cache_examples=False)
        with gr.Column(scale=3):
            gallery = gr.Gallery(
                label="Images", elem_id="gen-gallery", columns=2, height="auto", format="png", object_fit="contain",
                buttons=["download", "fullscreen"], interactive=False,
            )
            summary = gr.Markdown(elem_id="gen-summary")
            with gr.Row():
                ask = gr.Button("Ask about this image →", size="sm", elem_id="gen-ask")
                edit_this = gr.Button("Edit this image →", size="sm", elem_id="gen-edit-this")
            with gr.Accordion("Settings of this result · reuse · API", open=False, elem_id="gen-result-settings"):
                settings = gr.JSON(label="Settings (also embedded in each PNG)", elem_id="gen-settings")
                with gr.Row():
                    reuse = gr.Button("↩ Reuse these settings", size="sm", elem_id="gen-reuse")
                snippet = gr.Code(label="Reproduce with gradio_client", language="python", elem_id="gen-api")
                files = gr.File(label="Download PNGs (with settings)", file_count="multiple", elem_id="gen-files",
                                interactive=False)
                png = gr.File(label="Load settings from a umm PNG", file_types=[".png"], elem_id="gen-load-png",
                              height=90)
            history = history_strip("gen")
    selected = gr.State(0)
    gallery.select(_index, None, selected, queue=False, api_visibility="private")
    wire_picker(ctx, picker, "gen", app)
    picker.dropdown.change(
        lambda m: gr.update(visible=uses_negative(ctx.manager, m)), [picker.dropdown], [negative],
        queue=False, api_visibility="private",
    )
    wire_reuse(reuse, settings, picker, prompt, negative, seed, "generate", png=png, history=history)

    panel = picker.panel
    kwargs = dict(panel.components)
    names = ["model_id", "prompt", "negative_prompt", "seed", *kwargs]

    def check(model_id, prompt, negative_prompt, seed, **params) -> GenerateRequest:
        checks.check_model(ctx.manager, model_id, "generate")
        return GenerateRequest(
            checks.check_text(prompt, "prompt", what="prompt"),
            checks.check_text(negative_prompt, "negative_prompt", what="negative prompt", allow_empty=True),
            params=panel.collect(model_id, params),
            seed=checks.check_seed(seed),
        )

    def generate(
        model_id, prompt, negative_prompt, seed, progress: gr.Progress = gr.Progress(),
        request: gr.Request = None, **params,
    ) -> Iterator[tuple[Any, ...]]:
        with user_errors():
            req = check(model_id, prompt, negative_prompt, seed, **params)
            progress(None, desc="Waiting for the accelerator / loading the model…")
            started = time.perf_counter()
            with ctx.runs.track(request, SLOT, progress_control(ctx.manager, progress, "Generating")) as control:
                live = False
                for running in stream_images(ctx.manager, "generate", model_id, req, control):
                    if running.result is None:
                        # a plan being written (e.g. Bagel's thinking) shows as it grows; from then on this
                        # line carries the progress too, as gradio's bar gives way to the first update
                        live = live or bool(running.text)
                        if live:
                            text = outputs.running_status(running.text, running.done, running.total, running.unit,
                                                          time.perf_counter() - started)
                            yield gr.skip(), text, gr.skip(), gr.skip(), gr.skip()
                        continue
                    result = running.result
            paths = outputs.save_result(result)
            data = result.info.as_dict()
            text = outputs.summary(result.info, time.perf_counter() - started, len(paths))
            yield paths, text, data, outputs.api_snippet(base_url(request), "/generate", data), paths

    generate = panel.omittable(generate)
    # preprocess=False, as in Edit: every value reaches our own checks as the page or client sent it (an empty
    # control means the model's default), not gradio's per-component checks, which a session's rebuilt
    # components apply with their internals in the message.
    event = run.click(
        generate, [picker.dropdown, prompt, negative, seed], [gallery, summary, settings, snippet, files],
        inputs_kwargs=kwargs, api_name="generate", validator=checks.validator(names, check), preprocess=False,
        show_progress_on=[gallery], **LANE_KWARGS,
    )
    submit = prompt.submit(
        generate, [picker.dropdown, prompt, negative, seed], [gallery, summary, settings, snippet, files],
        inputs_kwargs=kwargs, api_visibility="private", validator=checks.validator(names, check), preprocess=False,
        show_progress_on=[gallery], **LANE_KWARGS,
    )

    wire_stop(ctx, stop, SLOT, [event, submit], "generate_stop", marked=summary)
    record(history, [event, submit], settings, gallery)
    reveal_after([event, submit], "gen-gallery")
    return {"gallery": gallery, "selected": selected, "ask": ask, "edit_this": edit_this}
