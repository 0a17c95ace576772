"""Edit by instruction: input image(s), the model's edit controls, before/after, output as new input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from umm.types import EditRequest
from umm.ui import checks, info, outputs
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

SLOT = "edit"


def build(ctx: UiContext, app: gr.Blocks) -> dict[str, Any]:
    can_edit = bool(ctx.manager.catalog.ids("edit"))
    gr.Markdown(info.no_editor_notice(ctx.manager), visible=not can_edit, elem_id="edit-notice")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            picker = model_picker(ctx, "edit", "edit")
            paints = _paints(ctx, picker.dropdown.value)
            image = gr.Image(label="Input image", type="filepath", elem_id="edit-image", height=300, visible=not paints)
            painter = gr.ImageEditor(
                label="Input image · paint the region to regenerate", type="pil", elem_id="edit-painter",
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"), height=360, visible=paints,
                sources=["upload", "clipboard"], transforms=(), layers=False,
            )
            with gr.Accordion("More input images (optional)", open=False):
                extra = gr.File(
                    label="Reference images", file_count="multiple", file_types=["image"], elem_id="edit-extra"
                )
            instruction = gr.Textbox(
                label="Instruction", lines=2, elem_id="edit-instruction", placeholder="e.g. make the sky purple"
            )
            negative = gr.Textbox(
                label="Negative prompt", value="", elem_id="edit-negative",
                visible=uses_negative(ctx.manager, picker.dropdown.value),
            )
            seed = render_controls(picker, "edit")
            with gr.Row():
                run = gr.Button("Edit", variant="primary", elem_id="edit-run", scale=3, interactive=can_edit)
                stop = gr.Button("■ Stop", variant="stop", elem_id="edit-stop", scale=1)
            if ctx.examples.get("edit"):
                gr.Examples(ctx.examples["edit"], inputs=[image, instruction], label="Examples", cache_examples=False)
        with gr.Column(scale=3):
            compare = gr.ImageSlider(label="Before / after", type="filepath", elem_id="edit-before-after", height=420)
            gallery = gr.Gallery(label="Outputs", elem_id="edit-gallery", columns=4, height=160, format="png",
                                 interactive=False)
            summary = gr.Markdown(elem_id="edit-summary")
            with gr.Row():
                use = gr.Button("⤴ Use output as input", size="sm", elem_id="edit-use-output")
                ask = gr.Button("Ask about this image →", size="sm", elem_id="edit-ask")
            with gr.Accordion("Settings of this result · reuse · API", open=False):
                settings = gr.JSON(label="Settings (also embedded in each PNG)", elem_id="edit-settings")
                reuse = gr.Button("↩ Reuse these settings", size="sm", elem_id="edit-reuse")
                snippet = gr.Code(label="Reproduce with gradio_client", language="python", elem_id="edit-api")
                files = gr.File(label="Download PNGs (with settings)", file_count="multiple", elem_id="edit-files",
                                interactive=False)
                png = gr.File(label="Load settings from a umm PNG", file_types=[".png"], elem_id="edit-load-png",
                              height=90)
            history = history_strip("edit")
    selected = gr.State(0)
    wire_picker(ctx, picker, "edit", app)
    picker.dropdown.change(
        lambda m: (gr.update(visible=not _paints(ctx, m)), gr.update(visible=_paints(ctx, m))), [picker.dropdown],
        [image, painter], queue=False, api_visibility="private",
    )
    # What is painted becomes the usual inputs: the picture, and its mask as the first extra image, so the
    # run, the API snippet and "Reuse" see exactly what the model gets.
    painter.change(painted_inputs, [painter], [image, extra], queue=False, api_visibility="private")
    picker.dropdown.change(
        lambda m: gr.update(visible=uses_negative(ctx.manager, m)), [picker.dropdown], [negative],
        queue=False, api_visibility="private",
    )
    wire_reuse(reuse, settings, picker, instruction, negative, seed, "edit", png=png, history=history)

    panel = picker.panel
    kwargs = dict(panel.components)
    names = ["model_id", "image", "extra_images", "instruction", "negative_prompt", "seed", *kwargs]

    def check(model_id, image, extra_images, instruction, negative_prompt, seed, **params) -> EditRequest:
        checks.check_model(ctx.manager, model_id, "edit")
        if not image:
            raise checks.FieldError("image", "Please add an input image to edit.")
        images = [*checks.check_images([image], "image", ctx.max_upload_bytes),
                  *checks.check_images(extra_images or [], "extra_images", ctx.max_upload_bytes)]
        checks.check_image_count(ctx.manager, model_id, "edit", len(images), "extra_images")
        return EditRequest(
            images,
            checks.check_text(instruction, "instruction", what="instruction"),
            checks.check_text(negative_prompt, "negative_prompt", what="negative prompt", allow_empty=True),
            params=panel.collect(model_id, params),
            seed=checks.check_seed(seed),
        )

    def edit(
        model_id, image, extra_images, instruction, negative_prompt, seed, progress: gr.Progress = gr.Progress(),
        request: gr.Request = None, **params,
    ) -> Iterator[tuple[Any, ...]]:
        with user_errors():
            req = check(model_id, image, extra_images, instruction, negative_prompt, seed, **params)
            image = checks.file_path(image)
            progress(None, desc="Waiting for the accelerator / loading the model…")
            started = time.perf_counter()
            with ctx.runs.track(request, SLOT, progress_control(ctx.manager, progress, "Editing")) as control:
                live = False
                for running in stream_images(ctx.manager, "edit", model_id, req, control):
                    if running.result is None:
                        # a plan being written (e.g. Bagel's thinking) shows as it grows; from then on this
                        # line carries the progress too, as gradio's bar gives way to the first update
                        live = live or bool(running.text)
                        if live:
                            text = outputs.running_status(running.text, running.done, running.total, running.unit,
                                                          time.perf_counter() - started)
                            yield gr.skip(), gr.skip(), text, *(gr.skip() for _ in range(4))
                        continue
                    result = running.result
            paths = outputs.save_result(result)
            data = result.info.as_dict()
            text = outputs.summary(result.info, time.perf_counter() - started, len(paths))
            extras = [checks.file_path(f) for f in extra_images or []]
            snippet_text = outputs.api_snippet(
                base_url(request), "/edit", data, {"image": image, "extra_images": extras or None}
            )
            yield (image, paths[0]) if paths else None, paths, text, data, snippet_text, paths, 0

    inputs = [picker.dropdown, image, extra, instruction, negative, seed]
    outs = [compare, gallery, summary, settings, snippet, files, selected]
    # preprocess=False: the uploads reach our own check (checks.check_images, as in Chat) as gradio
    # received them, instead of gradio decoding them first, whose failure reaches clients as its
    # internals and a server path. Per event, not per component: gradio rebuilds a session's component
    # from its constructor arguments when an update changes it, which would drop an instance override.
    event = run.click(
        panel.omittable(edit), inputs, outs, inputs_kwargs=kwargs, api_name="edit", preprocess=False,
        validator=checks.validator(names, check), show_progress_on=[compare, gallery], **LANE_KWARGS,
    )

    wire_stop(ctx, stop, SLOT, [event], "edit_stop", marked=summary)

    def pick(evt: gr.SelectData) -> int:
        return evt.index

    gallery.select(pick, None, selected, queue=False, api_visibility="private")

    def use_output(paths: list | None, index: int) -> Any:
        if not paths:
            raise gr.Error("No output yet: run an edit first.")
        item = paths[min(index or 0, len(paths) - 1)]
        return item[0] if isinstance(item, (list, tuple)) else item

    use.click(use_output, [gallery, selected], [image], queue=False, api_name="edit_use_output",
              api_visibility="undocumented")
    record(history, [event], settings, gallery)
    reveal_after([event], "edit-before-after")
    return {"gallery": gallery, "selected": selected, "ask": ask, "image": image}


def _paints(ctx: UiContext, model_id: str | None) -> bool:
    """Models whose edit takes a painted mask as its second image (catalog option ``edit_mask``)."""
    catalog = ctx.manager.catalog
    return bool(model_id in catalog and catalog.get(model_id).options.get("edit_mask"))


def painted_inputs(value: dict | None) -> tuple[Any, Any]:
    """ImageEditor value -> (picture path, [mask path]): white where anything was painted, black elsewhere."""
    import numpy as np
    from PIL import Image

    if not value or value.get("background") is None:
        return gr.update(), gr.update()
    background = value["background"].convert("RGB")
    folder = outputs.request_dir()
    picture = folder / "input.png"
    background.save(picture)
    alpha = np.zeros((background.height, background.width), dtype=bool)
    for layer in value.get("layers") or []:
        if layer is not None:
            alpha |= np.asarray(layer.convert("RGBA").resize(background.size))[..., 3] > 0
    if not alpha.any():
        return str(picture), None
    mask = folder / "mask.png"
    Image.fromarray((alpha * 255).astype("uint8")).save(mask)
    return str(picture), [str(mask)]
