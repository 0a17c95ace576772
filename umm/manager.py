"""The model manager: one model resident on the accelerator, one lane, swaps, memory and faults.

Every entry point validates its request before waiting for the lane, resolves the model only after the
lane is taken, and leaves a consistent state behind whatever happens (cancel, OOM, adapter error).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from umm.adapters.base import Adapter
from umm.catalog import Catalog, ModelSpec
from umm.control import RunControl
from umm.devices import free_memory, pick_device, torch_dtype
from umm.errors import AdapterError, ModelLoadError, OutOfMemoryError, UmmError
from umm.host_cache import HostCache
from umm.hub import require_weights, weights_present
from umm.registry import adapter_class
from umm.types import EditRequest, GenerateRequest, ImageResult, UnderstandRequest

log = logging.getLogger(__name__)

FaultHook = Callable[[str, ModelSpec], None]
"""Called with ("load" | "run", spec) before each load and each run; tests raise from it."""

OOM_HINT = "Try a smaller size, fewer images or fewer steps, or enable CPU offload for this model."


@dataclass(frozen=True)
class LoadEvent:
    model_id: str
    action: str  # "load" | "unload" | "to_host" | "from_host" | "failed"
    source: str  # "disk" | "hub" | "host cache" | "-"
    seconds: float
    bytes: int
    resident_after: str | None


class ModelManager:
    def __init__(
        self,
        catalog: Catalog,
        *,
        device: str | torch.device | None = None,
        host_cache_bytes: int = 0,
        time_limit_s: float | None = None,
        fault_hook: FaultHook | None = None,
    ) -> None:
        self.catalog = catalog
        self.device = pick_device(str(device) if device else None)
        self.time_limit_s = time_limit_s
        self.fault_hook = fault_hook
        self._lane = threading.Lock()
        self._state = threading.Lock()  # guards the fields below for readers outside the lane
        self._resident: Adapter | None = None
        self._host = HostCache(host_cache_bytes)
        self._unavailable: dict[str, str] = {}
        self._waiting = 0
        self.events: collections.deque[LoadEvent] = collections.deque(maxlen=1000)
        self.lane_waits: collections.deque[float] = collections.deque(maxlen=10_000)  # seconds per request
        self.runs: collections.deque[tuple[str, str]] = collections.deque(maxlen=10_000)  # (asked, resident)

    # -- state, readable at any time -------------------------------------------------------
    @property
    def resident_id(self) -> str | None:
        with self._state:
            return self._resident.spec.id if self._resident is not None else None

    @property
    def queue_depth(self) -> int:
        with self._state:
            return self._waiting

    def status(self, model_id: str) -> str:
        """resident | cached in RAM | on disk | not downloaded | unavailable: <reason>."""
        spec = self.catalog.get(model_id)
        with self._state:
            if self._resident is not None and self._resident.spec.id == model_id:
                return "resident"
            if model_id in self._unavailable:
                return f"unavailable: {self._unavailable[model_id]}"
            if model_id in self._host:
                return "cached in RAM"
        return "on disk" if weights_present(spec) else "not downloaded"

    # -- the lane ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lane(self, model_id: str) -> Iterator[Adapter]:
        """Hold the accelerator lane with ``model_id`` resident; the model is resolved inside."""
        spec = self.catalog.get(model_id)
        with self._state:
            self._waiting += 1
        asked = time.perf_counter()
        try:
            self._lane.acquire()
        finally:
            with self._state:
                self._waiting -= 1
        self.lane_waits.append(time.perf_counter() - asked)
        try:
            adapter = self._ensure_resident(spec)
            self.runs.append((model_id, adapter.spec.id))
            try:
                yield adapter
            except torch.OutOfMemoryError as err:
                free_memory(self.device)
                raise OutOfMemoryError(f"Out of memory while running {spec.name}. {OOM_HINT}") from err
            except UmmError:
                raise
            except Exception as err:
                log.exception("%s failed while running", spec.id)
                raise AdapterError(f"{spec.name} failed: {type(err).__name__}: {err}") from err
        finally:
            self._lane.release()

    def load(self, model_id: str) -> None:
        """Make ``model_id`` resident (an explicit load also retries a model marked unavailable)."""
        with self._state:
            self._unavailable.pop(model_id, None)
        with self.lane(model_id):
            pass

    def unload(self) -> None:
        """Drop the resident model (to the host cache if it fits, else entirely)."""
        with self._lane:
            self._evict_resident()

    # -- tasks -------------------------------------------------------------------------------
    def generate(self, model_id: str, request: GenerateRequest, control: RunControl | None = None) -> ImageResult:
        spec = self.catalog.get(model_id)
        request.params = spec.capability("generate").validate(request.params)
        notes = _unused_negative(spec, request)
        control = control or self._control()
        with self.lane(model_id) as adapter:
            self._run_hook("run", adapter.spec)
            control.restart_clock()
            result = adapter.generate(request, control)
        result.info.notes.extend(notes)
        return result

    def edit(self, model_id: str, request: EditRequest, control: RunControl | None = None) -> ImageResult:
        spec = self.catalog.get(model_id)
        capability = spec.capability("edit")
        capability.check_images(len(request.images))
        request.params = capability.validate(request.params)
        notes = _unused_negative(spec, request)
        control = control or self._control()
        with self.lane(model_id) as adapter:
            self._run_hook("run", adapter.spec)
            control.restart_clock()
            result = adapter.edit(request, control)
        result.info.notes.extend(notes)
        return result

    def understand(
        self, model_id: str, request: UnderstandRequest, control: RunControl | None = None
    ) -> Iterator[str]:
        """Stream the reply; the lane is held while the caller iterates and freed when it stops."""
        capability = self.catalog.get(model_id).capability("understand")
        capability.check_images(sum(len(m.images) for m in request.messages))
        request.params = capability.validate(request.params)
        control = control or self._control()
        return self._stream(model_id, request, control)

    def _stream(self, model_id: str, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        with self.lane(model_id) as adapter:
            self._run_hook("run", adapter.spec)
            control.restart_clock()
            chunks = adapter.understand(request, control)
            try:
                yield from chunks
            finally:
                chunks.close()

    def _control(self) -> RunControl:
        return RunControl(time_limit_s=self.time_limit_s)

    # -- residency (called with the lane held) ---------------------------------------------------
    def _ensure_resident(self, spec: ModelSpec) -> Adapter:
        if self._resident is not None and self._resident.spec.id == spec.id:
            return self._resident
        with self._state:
            reason = self._unavailable.get(spec.id)
        if reason is not None:
            raise ModelLoadError(f"{spec.name} is unavailable: {reason}")
        self._evict_resident()
        cached = self._host.pop(spec.id)
        if cached is not None:
            return self._admit_from_host(cached)
        return self._load_from_storage(spec)

    def _admit_from_host(self, adapter: Adapter) -> Adapter:
        started = time.perf_counter()
        try:
            adapter.to(self.device)
        except torch.OutOfMemoryError as err:
            self._drop(adapter)
            raise OutOfMemoryError(f"Out of memory while moving {adapter.spec.name} to {self.device}.") from err
        self._set_resident(adapter)
        self._record(adapter.spec.id, "from_host", "host cache", started, adapter.weight_bytes())
        return adapter

    def _load_from_storage(self, spec: ModelSpec) -> Adapter:
        started = time.perf_counter()
        source = require_weights(spec)
        adapter = adapter_class(spec.family)(spec)
        try:
            self._run_hook("load", spec)
            adapter.load(self.device, torch_dtype(spec.dtype, self.device))
        except BaseException as err:
            self._drop(adapter)
            self._record(spec.id, "failed", source, started, 0)
            if isinstance(err, torch.OutOfMemoryError):
                raise OutOfMemoryError(
                    f"Out of memory while loading {spec.name} (~{spec.weight_bytes / 1e9:.1f} GB). "
                    "Nothing was left loaded. Choose a smaller model or enable CPU offload."
                ) from err
            if not isinstance(err, Exception):
                raise
            failure = err if isinstance(err, UmmError) else ModelLoadError(f"{spec.name} could not be loaded: {err}")
            if isinstance(failure, ModelLoadError):
                with self._state:
                    self._unavailable[spec.id] = str(failure)
            if failure is err:
                raise
            raise failure from err
        self._set_resident(adapter)
        self._record(spec.id, "load", source, started, adapter.weight_bytes())
        return adapter

    def _evict_resident(self) -> None:
        adapter = self._resident
        if adapter is None:
            return
        started = time.perf_counter()
        self._set_resident(None)
        size = adapter.weight_bytes()
        if self._host.fits(size):
            adapter.to(torch.device("cpu"))
            for evicted in self._host.put(adapter.spec.id, adapter, size):
                self._drop(evicted)
            # Weights moved, nothing became garbage: return cached device blocks, skip the full gc pass.
            free_memory(self.device, collect=False)
            self._record(adapter.spec.id, "to_host", "-", started, size)
        else:
            self._drop(adapter)  # collects once and empties the device cache
            self._record(adapter.spec.id, "unload", "-", started, size)

    def _drop(self, adapter: Adapter) -> None:
        """Unload; a full garbage-collection pass (~0.3 s with transformers imported) runs only if a
        reference cycle still holds a module, which refcounting alone cannot free."""
        modules = [weakref.ref(m) for m in adapter.modules()]
        try:
            adapter.unload()
        finally:
            free_memory(self.device, collect=any(ref() is not None for ref in modules))

    def _set_resident(self, adapter: Adapter | None) -> None:
        with self._state:
            self._resident = adapter

    def _run_hook(self, event: str, spec: ModelSpec) -> None:
        if self.fault_hook is not None:
            self.fault_hook(event, spec)

    def _record(self, model_id: str, action: str, source: str, started: float, size: int) -> None:
        event = LoadEvent(model_id, action, source, time.perf_counter() - started, size, self.resident_id)
        self.events.append(event)
        log.info(
            "%s %s from %s: %.2f s, %.1f MB (resident: %s)",
            action, model_id, source, event.seconds, size / 1e6, event.resident_after,
        )


def manager_from_config(catalog: Catalog, config: dict[str, Any], **overrides: Any) -> ModelManager:
    settings = {**(config.get("manager") or {}), **overrides}
    return ModelManager(
        catalog,
        device=settings.get("device"),
        host_cache_bytes=int(float(settings.get("host_cache_bytes") or 0)),
        time_limit_s=settings.get("time_limit_s"),
    )


def _unused_negative(spec: ModelSpec, request: GenerateRequest | EditRequest) -> list[str]:
    """Clear a negative prompt the model has no use for (catalog option), and say so in the result."""
    if not request.negative_prompt or spec.options.get("negative_prompt", False):
        return []
    request.negative_prompt = ""
    log.info("%s takes no negative prompt; it was ignored", spec.id)
    return [f"{spec.name} takes no negative prompt; the one given was not used."]
