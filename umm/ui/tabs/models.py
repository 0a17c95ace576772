"""The catalog: capabilities, sizes and status, with load/unload for local use.

On a public Space, load/unload would let any visitor evict the model others are using, so the
buttons are hidden there and their events are not callable through the API.
"""

from __future__ import annotations

import gradio as gr

from umm.ui import info
from umm.ui.context import UiContext
from umm.ui.runs import LANE_KWARGS, user_errors


def build(ctx: UiContext, app: gr.Blocks) -> None:
    manager = ctx.manager
    intro = "One model is resident on the accelerator at a time; running any model swaps it in."
    if any(spec.demo for spec in manager.catalog):
        intro += f" Models marked {info.DEMO_BADGE} are tiny offline checkpoints with random weights."
    gr.Markdown(intro)
    table = gr.Dataframe(
        value=info.table(manager), headers=info.TABLE_HEADERS, interactive=False, wrap=True,
        elem_id="models-table",
    )
    resident = gr.Markdown(_resident(ctx), elem_id="models-resident")
    with gr.Row(visible=not ctx.public):
        choice = gr.Dropdown(
            [(info.label(s, manager), s.id) for s in manager.catalog], value=info.default_model(manager, "understand")
            or next(iter(manager.catalog.ids()), None), label="Model", elem_id="models-choice", scale=3,
        )
        load = gr.Button("Load", variant="primary", elem_id="models-load", scale=1)
        unload = gr.Button("Unload", elem_id="models-unload", scale=1)
    refresh = gr.Button("↻ Refresh status", size="sm", elem_id="models-refresh")
    visibility = "private" if ctx.public else "public"

    def view() -> tuple[list[list[str]], str]:
        return info.table(manager), _resident(ctx)

    def do_load(model_id: str, progress: gr.Progress = gr.Progress()) -> tuple[list[list[str]], str]:
        """A failed load is reported under the table; the table itself always stays."""
        try:
            with user_errors():
                progress(None, desc=f"Loading {model_id}…")
                manager.load(model_id)
        except gr.Error as err:
            table_rows, resident_text = view()
            return table_rows, f"{resident_text}\n\n✗ {err.message}"
        return view()

    def do_unload() -> tuple[list[list[str]], str]:
        with user_errors():
            manager.unload()
        return view()

    load.click(do_load, [choice], [table, resident], api_name="load_model", api_visibility=visibility, **LANE_KWARGS)
    unload.click(do_unload, None, [table, resident], api_name="unload_model", api_visibility=visibility,
                 **LANE_KWARGS)
    refresh.click(view, None, [table, resident], queue=False, api_name="models_status")
    app.load(view, None, [table, resident], queue=False, api_visibility="private")


def _resident(ctx: UiContext) -> str:
    from umm.devices import describe

    resident = ctx.manager.resident_id
    waiting = ctx.manager.queue_depth
    text = f"**Resident:** `{resident}`" if resident else "**Resident:** none"
    text += f" · {waiting} request(s) waiting for the lane" if waiting else ""
    return f"{text}\n\n**Device:** {describe(ctx.manager.device)}"
