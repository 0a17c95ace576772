"""What every tab needs: the manager, the run registry, the app settings and shared widgets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from umm.inputs import MAX_FILE_BYTES
from umm.manager import ModelManager
from umm.ui import info
from umm.ui.params import ParamPanel
from umm.ui.runs import LANE_KWARGS, RunRegistry, progress_control, user_errors


@dataclass
class UiContext:
    manager: ModelManager
    public: bool = False
    max_upload_bytes: int = MAX_FILE_BYTES
    runs: RunRegistry = field(default_factory=RunRegistry)
    examples: dict[str, Any] = field(default_factory=dict)


@dataclass
class Picker:
    """A capability-filtered model dropdown with its info card and parameter controls."""

    dropdown: gr.Dropdown
    card: gr.Markdown
    panel: ParamPanel
    pending: gr.State
    reset: gr.Button | None = None

    @property
    def controls(self) -> list[gr.components.Component]:
        return list(self.panel.components.values())


def model_picker(ctx: UiContext, capability: str, prefix: str, label: str = "Model") -> Picker:
    """Dropdown + card (call inside the layout where they should appear)."""
    model_id = info.default_model(ctx.manager, capability)
    dropdown = gr.Dropdown(
        choices=info.choices(ctx.manager, capability), value=model_id, label=label,
        elem_id=f"{prefix}-model", interactive=True,
        allow_custom_value=True,  # an unknown id then reaches our check, which lists the known ones
    )
    card = gr.Markdown(info.card(ctx.manager, model_id), elem_id=f"{prefix}-card", elem_classes=["umm-card"])
    return Picker(dropdown, card, ParamPanel(ctx.manager.catalog, capability, prefix), gr.State(None))


def render_controls(picker: Picker, prefix: str, *, open: bool = False) -> gr.Number:
    """The accordion of the model's own controls, a seed box and a reset button; returns the seed box."""
    with gr.Accordion("Settings", open=open, elem_id=f"{prefix}-settings"):
        picker.panel.render(picker.dropdown.value)
        with gr.Row(equal_height=False, elem_classes=["umm-seed-row"]):
            seed = gr.Number(-1, label="Seed", info="-1 = random", precision=0, elem_id=f"{prefix}-seed", scale=3)
            dice = gr.Button("⚄ Random", size="sm", elem_id=f"{prefix}-random-seed", scale=1, min_width=90)
        dice.click(lambda: -1, None, seed, queue=False, api_visibility="private")
        picker.reset = gr.Button("Reset to model defaults", size="sm", elem_id=f"{prefix}-reset")
    return seed


def wire_picker(ctx: UiContext, picker: Picker, prefix: str, app: gr.Blocks) -> None:
    """Model change: new card and controls at once; then (locally) load the model in the lane."""
    panel, card, dropdown = picker.panel, picker.card, picker.dropdown

    def show(model_id: str, pending: dict | None) -> list[Any]:
        updates = panel.updates(model_id)
        if pending and pending.get("model_id") == model_id:  # "reuse these settings" switched the model
            values = panel.settings_updates(pending.get("params") or {})
            updates = [{**u, **v} if u.get("visible") else u for u, v in zip(updates, values, strict=True)]
        return [info.card(ctx.manager, model_id), None, *updates]

    def load(model_id: str, progress: gr.Progress = gr.Progress()) -> str:
        with user_errors():
            if not model_id:
                return info.card(ctx.manager, model_id)
            spec = ctx.manager.catalog.get(model_id)
            if not info.runnable(ctx.manager, model_id):  # never start a download by picking a model
                return info.card(ctx.manager, model_id)
            if ctx.manager.resident_id != model_id:
                progress(None, desc=f"Loading {spec.name}…")
                ctx.manager.load(model_id)
            return info.card(ctx.manager, model_id)

    event = dropdown.change(
        show, [dropdown, picker.pending], [card, picker.pending, *picker.controls], queue=False,
        api_name=f"{prefix}_select_model",
        api_visibility="undocumented",
    )
    if not ctx.public:
        event.then(
            load, [dropdown], [card], api_name=f"{prefix}_load_model", show_progress="full",
            api_visibility="undocumented", **LANE_KWARGS,
        )
    assert picker.reset is not None
    picker.reset.click(
        lambda model_id: panel.updates(model_id), [dropdown], picker.controls, queue=False,
        api_name=f"{prefix}_reset_settings", api_visibility="undocumented",
    )
    app.load(
        lambda model_id: [info.card(ctx.manager, model_id), *panel.updates(model_id)],
        [dropdown], [card, *picker.controls], queue=False, api_visibility="private",
    )


def control_for(ctx: UiContext, progress: gr.Progress | None, what: str):
    return progress_control(ctx.manager, progress, what)


def uses_negative(manager: ModelManager, model_id: str | None) -> bool:
    if not model_id or model_id not in manager.catalog:
        return False
    spec = manager.catalog.get(model_id)
    return bool(spec.options.get("negative_prompt", False))  # catalog data, e.g. Janus's CFG has no negative


def base_url(request: gr.Request | None) -> str:
    """What a gradio_client should connect to: the Space id on Spaces, else the URL the page came from."""
    import os

    if os.environ.get("SPACE_ID"):
        return os.environ["SPACE_ID"]
    try:
        return str(request.request.base_url)  # type: ignore[union-attr]
    except AttributeError:
        return "http://127.0.0.1:7860/"


def wire_reuse(
    button: gr.Button, settings: gr.JSON, picker: Picker, prompt: gr.Textbox, negative: gr.Textbox, seed: gr.Number,
    capability: str, png: gr.File | None = None, history: tuple[gr.Gallery, gr.State] | None = None,
) -> None:
    """"Reuse these settings": model, prompt, seed and every control back into the inputs.

    The same happens for a umm PNG dropped on ``png`` (its embedded settings) and for a click on an
    entry of the session ``history`` strip. A model switch would reset the controls to the new
    model's defaults, so the settings are parked in the picker's pending state and applied by the
    model-change handler instead. Settings of a model that cannot do this tab's task keep the current
    model and bring back only the prompt and seed.
    """
    from umm.images import read_settings

    outputs = [picker.dropdown, prompt, negative, seed, picker.pending, *picker.controls]

    def reuse(data: dict | None, current: str | None) -> list[Any]:
        if not data:
            raise gr.Error("Nothing to reuse yet: run once first.")
        model_id = data.get("model_id")
        catalog = picker.panel.catalog
        if model_id not in catalog or not catalog.get(model_id).can(capability):
            gr.Warning(f"{model_id!r} cannot {capability} here: kept the current model, took prompt and seed.")
            model_id, params = current, {}
        else:
            params = data.get("params") or {}
        pending = {**data, "model_id": model_id} if model_id != current else None
        return [
            gr.update(value=model_id), data.get("prompt", ""), data.get("negative_prompt", ""),
            data.get("seed", -1), pending, *picker.panel.settings_updates(params),
        ]

    button.click(reuse, [settings, picker.dropdown], outputs, queue=False, api_visibility="private")
    if png is not None:

        def from_png(path: Any, current: str | None) -> list[Any]:
            if not path:
                return [gr.update() for _ in outputs]
            try:
                data = read_settings(path if isinstance(path, str) else path.get("path"))
            except OSError:
                data = None
            if not data:
                raise gr.Error("That image carries no umm settings (only PNGs saved by umm do).")
            return reuse(data, current)

        png.upload(from_png, [png, picker.dropdown], outputs, queue=False, api_visibility="private")
    if history is not None:
        strip, entries = history

        def pick(entries_now: list[dict], current: str | None, evt: gr.SelectData) -> list[Any]:
            return reuse(entries_now[evt.index]["settings"], current)

        strip.select(pick, [entries, picker.dropdown], outputs, queue=False, api_visibility="private")


STOPPED = "■ Stopped."


def wire_stop(
    ctx: UiContext, stop: gr.Button, slot: str, events: list[Any], api_name: str,
    marked: gr.components.Component | None = None, mark: Any = None,
) -> None:
    """Stop both cancels the gradio events and the run's RunControl, so the lane frees within a step.

    ``marked`` is the output that then says so, the same way in every tab: ``mark(current value)``
    returns its new value (by default the line "■ Stopped.").
    """

    def stop_run(request: gr.Request = None) -> Any:
        ctx.runs.cancel(request, slot)
        return STOPPED if marked is not None else None

    def stop_and_mark(current: Any, request: gr.Request = None) -> Any:
        ctx.runs.cancel(request, slot)
        return mark(current)

    if mark is not None:
        stop.click(stop_and_mark, [marked], marked, cancels=events, queue=False, api_name=api_name)
    else:
        stop.click(stop_run, None, marked, cancels=events, queue=False, api_name=api_name)
