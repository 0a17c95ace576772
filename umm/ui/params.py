"""Sampling controls built from the catalog's parameter schema.

Each capability gets one component per parameter name found in any model of the catalog; when the
model changes, the controls it has are shown with its own range and default and the others are hidden.
A fixed set of named components keeps the API stable: clients pass parameters by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from umm.catalog import Catalog, ParamSpec
from umm.errors import InputError

RESERVED = {"model_id", "prompt", "negative_prompt", "seed", "message", "history", "images", "instruction"}


class FieldError(InputError):
    """An input error tied to one named input, so the validator can point at it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass
class ParamPanel:
    """The controls of one capability, keyed by the parameter name clients use."""

    catalog: Catalog
    capability: str
    prefix: str
    components: dict[str, gr.components.Component] = field(default_factory=dict)
    _hidden: dict[str, dict[str, Any]] = field(default_factory=dict)  # the update that hides a control

    def specs(self) -> dict[str, list[ParamSpec]]:
        """Every parameter name of this capability with its spec in each model that has it."""
        found: dict[str, list[ParamSpec]] = {}
        for spec in self.catalog:
            if spec.can(self.capability):
                for param in spec.capability(self.capability).params:
                    found.setdefault(param.name, []).append(param)
        return found

    def render(self, model_id: str | None) -> dict[str, gr.components.Component]:
        """Create the components (inside the caller's layout), showing those of ``model_id``."""
        own = self._own(model_id)
        for name, variants in self.specs().items():
            if name in RESERVED:
                raise ValueError(f"parameter name {name!r} clashes with a UI input")
            component = _component(name, variants, f"{self.prefix}-{name}", own.get(name))
            # No initial value: gradio's API then offers None as every control's default, and None means
            # "the chosen model's own default" (ParamSpec.validate). An initial value would be one model's
            # default handed to every other model. The page fills the values in on load (``updates``).
            component.value = None
            self.components[name] = component
            hidden: dict[str, Any] = {"value": variants[0].default}
            if isinstance(component, gr.Slider):  # and the full range, in which that value lies
                hidden.update(minimum=component.minimum, maximum=component.maximum)
            self._hidden[name] = hidden
        return self.components

    def omittable(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` (taking the controls as ``**params``) declaring a None default per control.

        gradio reads the signature to tell API clients which inputs are optional; the function itself is
        unchanged (a wrapper would hide that it is a generator, which gradio streams).
        """
        signature = inspect.signature(fn)
        kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in self.components]
        fn.__signature__ = signature.replace(parameters=[*kept, *extra])  # type: ignore[attr-defined]
        return fn

    def _own(self, model_id: str | None) -> dict[str, ParamSpec]:
        if model_id in self.catalog and self.catalog.get(model_id).can(self.capability):
            return {p.name: p for p in self.catalog.get(model_id).capability(self.capability).params}
        return {}

    def updates(self, model_id: str | None, *, reset: bool = True) -> list[Any]:
        """One update per component: shown with the model's range (and default when ``reset``)."""
        own = self._own(model_id)
        out = []
        for name in self.components:
            param = own.get(name)
            if param is None:  # not this model's: hidden, holding any valid value (the page sends it along)
                out.append(gr.update(visible=False, **self._hidden.get(name, {})))
                continue
            update: dict[str, Any] = {"visible": True, "label": param.label or name, "info": param.help or None}
            if param.type in ("int", "float"):
                step = param.step or (1 if param.type == "int" else 0.01)
                update.update(minimum=param.min, maximum=param.max, step=step)
            if param.type == "choice":
                update["choices"] = list(param.choices)
            if reset:
                update["value"] = param.default
            out.append(gr.update(**update))
        return out

    def collect(self, model_id: str, values: dict[str, Any]) -> dict[str, Any]:
        """The validated parameters of ``model_id`` from all control values (others are ignored)."""
        cap = self.catalog.get(model_id).capability(self.capability)
        params = {}
        for param in cap.params:
            try:
                params[param.name] = param.validate(values.get(param.name))
            except InputError as err:
                raise FieldError(param.name, str(err)) from None
        if cap.ordered:  # the catalog's cross-parameter rules (e.g. CFG start <= end)
            try:
                cap.validate(params)
            except InputError as err:
                raise FieldError(cap.ordered[0][0], str(err)) from None
        return params

    def settings_updates(self, params: dict[str, Any]) -> list[Any]:
        """Values to put back into the controls ("reuse these settings")."""
        return [gr.update(value=params[name]) if name in params else gr.update() for name in self.components]


def _unchecked(payload: float | None) -> float | None:
    return payload


def _component(name: str, variants: list[ParamSpec], elem_id: str, own: ParamSpec | None) -> gr.components.Component:
    """A control wide enough for every model's range (the model change narrows it in the page)."""
    first = own or variants[0]
    label = first.label or name
    common = {"label": label, "info": first.help or None, "visible": own is not None, "elem_id": elem_id}
    kinds = {p.type for p in variants}
    if kinds <= {"int", "float"}:
        lows = [p.min for p in variants]
        highs = [p.max for p in variants]
        if None in lows or None in highs:
            return gr.Number(value=first.default, precision=0 if kinds == {"int"} else None, **common)
        slider = gr.Slider(
            minimum=min(lows), maximum=max(highs), value=first.default,
            step=first.step or (1 if first.type == "int" else 0.01), **common,
        )
        # Gradio's own range check runs during the validator's preprocessing and reaches API clients as
        # a bare HTTP 400; leave the check to ParamSpec, whose message names the parameter and range.
        # (An instance override, not a subclass: gradio writes a .pyi next to component subclasses.)
        slider.preprocess = _unchecked  # type: ignore[method-assign]
        return slider
    if kinds == {"bool"}:
        return gr.Checkbox(value=first.default, **common)
    if kinds == {"choice"}:
        choices = list(dict.fromkeys(c for p in variants for c in p.choices))
        return gr.Dropdown(choices=choices, value=first.default, **common)
    return gr.Textbox(value=str(first.default), **common)
