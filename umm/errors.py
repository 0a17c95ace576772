"""User-facing errors.

Every failure a user can cause or meet (bad input, missing weights, out of memory, cancel) is one of
these, so the UI and CLI can show the message as-is instead of a stack trace.
"""

from __future__ import annotations


class UmmError(Exception):
    """An error whose message is written for the person using the app."""


class CatalogError(UmmError):
    """A catalog entry is malformed."""


class InputError(UmmError):
    """A request was rejected before it reached the model."""


class UnknownModelError(InputError):
    """A model id that the catalog does not hold."""


class CapabilityError(InputError):
    """The model cannot do the requested task."""


class WeightsUnavailableError(UmmError):
    """Weights could not be found locally and could not be fetched."""

    short: str | None = None  # one line for a toast; the message itself says how and where to fetch


class ModelLoadError(UmmError):
    """Loading failed for a reason other than missing weights (corrupt files, unsafe format, …)."""


class OutOfMemoryError(UmmError):
    """The accelerator ran out of memory; state has been cleaned up."""


class AdapterError(UmmError):
    """A model raised something unexpected while running; the manager stayed consistent."""


class CancelledError(UmmError):
    """The request was cancelled (stop button, disconnect)."""


class TimeLimitError(UmmError):
    """The per-request time limit was exceeded; the run stopped cooperatively."""
