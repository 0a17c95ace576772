"""Adapter families as lazy ``module:Class`` strings, so importing the registry imports no model code."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from umm.adapters.base import Adapter

FAMILIES: dict[str, str] = {
    "janus": "umm.adapters.janus:JanusAdapter",
    "janus-v1": "umm.adapters.janus_v1:JanusV1Adapter",
    "janusflow": "umm.adapters.janusflow:JanusFlowAdapter",
    "emu3": "umm.adapters.emu3:Emu3Adapter",
    "omnigen2": "umm.adapters.omnigen2:OmniGen2Adapter",
    "blip3o": "umm.adapters.blip3o:Blip3oAdapter",
    "bagel": "umm.adapters.bagel:BagelAdapter",
    "deepgen": "umm.adapters.deepgen:DeepGenAdapter",
    "showo": "umm.adapters.showo:ShowoAdapter",
    "mmada": "umm.adapters.mmada:MmadaAdapter",
    "showo2": "umm.adapters.showo2:Showo2Adapter",
    "tokenflow": "umm.adapters.tokenflow:TokenFlowAdapter",
    "emu3_5": "umm.adapters.emu3_5:Emu35Adapter",
}


def adapter_class(family: str) -> type[Adapter]:
    """Import and return the adapter class for ``family`` (only now is model code imported)."""
    module_name, _, class_name = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
