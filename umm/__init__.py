"""umm: one app, one API and one CLI over unified multimodal models.

Importing this package imports no model code; ``umm.load`` does that lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["__version__", "list_models", "load"]

if TYPE_CHECKING:
    from umm.api import Model


def load(model_id: str, **kwargs) -> Model:
    from umm.api import load as _load

    return _load(model_id, **kwargs)


def list_models(capability: str | None = None) -> list[str]:
    from umm.catalog import load_catalog

    return load_catalog().ids(capability)
