"""The Ray backend: the :class:`~umm.serve.backend.Backend` interface over a handle on the umm deployment.

Every run is one streaming call tagged with its model id (``multiplexed_model_id``), so Serve routes it to
a replica that already holds the model. Progress events feed the caller's ``RunControl.on_progress``;
``control.cancel()`` (the UI's Stop) cancels the call, which cancels the run on its replica. A replica
that dies before a run produced anything is retried on another one; one that dies mid-stream ends the
run with a clear :class:`ReplicaLostError` and the next request works.
"""

# ruff: noqa: E402  (Serve routing settings below must precede the ray imports)
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Serve's router (in this, the calling process) reads these when ray.serve is imported. Its defaults give a
# replica 0.1 s to report its queue and 1 s to be found holding the model before a request spills onto
# another replica, which then swaps; on a busy host that turns into swaps, and a swap of a real model
# costs far more than waiting. Set them before ray.serve is imported to choose otherwise.
for _name, _value in (("RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S", "1.0"),
                      ("RAY_SERVE_MAX_QUEUE_LENGTH_RESPONSE_DEADLINE_S", "5.0"),
                      ("RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S", "10.0")):
    os.environ.setdefault(_name, _value)

import ray
from ray import serve
from ray.serve.exceptions import DeploymentUnavailableError, RayServeException, RequestCancelledError

from umm.catalog import Catalog
from umm.control import RunControl
from umm.errors import CancelledError, UmmError
from umm.hub import weights_present
from umm.serve import deployment as dep
from umm.types import EditRequest, GenerateRequest, ImageResult, UnderstandRequest

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RETRYABLE: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, DeploymentUnavailableError,
)
CANCELLED: tuple[type[BaseException], ...] = (
    RequestCancelledError, ray.exceptions.TaskCancelledError, asyncio.CancelledError,
)


class ReplicaLostError(UmmError):
    """The replica running a request went away mid-run; the deployment replaces it."""


class _CancelWatcher:
    """One thread for all in-flight calls: a cancelled RunControl cancels its Ray call within ~20 ms."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[RunControl, Any]] = {}
        self._thread: threading.Thread | None = None

    def add(self, control: RunControl, response: Any) -> int:
        with self._lock:
            key = id(response)
            self._calls[key] = (control, response)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="umm-ray-cancel", daemon=True)
                self._thread.start()
        return key

    def discard(self, key: int) -> None:
        with self._lock:
            self._calls.pop(key, None)

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval_s)
            with self._lock:
                if not self._calls:
                    self._thread = None
                    return
                cancelled = [key for key, (control, _) in self._calls.items() if control.cancelled]
                responses = [self._calls.pop(key)[1] for key in cancelled]
            for response in responses:
                response.cancel()


class RayBackend:
    """The same surface as :class:`~umm.manager.ModelManager`, served by a Ray deployment of managers."""

    def __init__(
        self, handle: Any, catalog: Catalog, *, time_limit_s: float | None = None, retries: int = 2,
        timeout_s: float = 600,
    ) -> None:
        self.catalog = catalog
        self.time_limit_s = time_limit_s
        self.retries = retries
        self.timeout_s = timeout_s  # bound on control calls (load, state)
        self._handle = handle
        self._watcher = _CancelWatcher()
        self._lock = threading.Lock()
        self._inflight = 0
        self._states: tuple[float, list[dict[str, Any]]] = (0.0, [])

    # -- state ----------------------------------------------------------------------------------
    def replicas(self, max_age_s: float = 0.25) -> list[dict[str, Any]]:
        """The live replicas' last reports (resident model, loads, runs, cancelled, ...)."""
        when, states = self._states
        if time.monotonic() - when > max_age_s:
            try:
                states = ray.get(dep.board().states.remote(), timeout=10)
            except (ValueError, ray.exceptions.RayError, TimeoutError):
                log.warning("the replica board did not answer", exc_info=True)
            self._states = (time.monotonic(), states)
        return states

    @property
    def device(self) -> str:
        devices = sorted({s["device"] for s in self.replicas()}) or ["?"]
        return f"Ray Serve, {len(self.replicas())} replica(s) on {', '.join(devices)}"

    @property
    def resident_id(self) -> str | None:
        residents = [s["resident"] for s in self.replicas() if s["resident"]]
        return residents[0] if residents else None

    @property
    def queue_depth(self) -> int:
        with self._lock:
            return self._inflight

    def status(self, model_id: str) -> str:
        spec = self.catalog.get(model_id)
        states = self.replicas()
        if any(s["resident"] == model_id for s in states):
            return "resident"
        if any(model_id in s["cached"] for s in states):
            return "cached in RAM"
        return "on disk" if weights_present(spec) else "not downloaded"

    # -- residency ----------------------------------------------------------------------------
    def load(self, model_id: str) -> None:
        self.catalog.get(model_id)
        self._handle.options(multiplexed_model_id=model_id).load.remote().result(timeout_s=self.timeout_s)
        self._states = (0.0, [])

    def unload(self) -> None:
        """Every replica drops its resident model at its next heartbeat."""
        ray.get(dep.board().unload_all.remote(), timeout=10)
        self._states = (0.0, [])

    # -- tasks ----------------------------------------------------------------------------------
    def generate(self, model_id: str, request: GenerateRequest, control: RunControl | None = None) -> ImageResult:
        request.params = self.catalog.get(model_id).capability("generate").validate(request.params)
        return self._image("generate", model_id, request, control)

    def edit(self, model_id: str, request: EditRequest, control: RunControl | None = None) -> ImageResult:
        capability = self.catalog.get(model_id).capability("edit")
        capability.check_images(len(request.images))
        request.params = capability.validate(request.params)
        return self._image("edit", model_id, request, control)

    def understand(
        self, model_id: str, request: UnderstandRequest, control: RunControl | None = None
    ) -> Iterator[str]:
        capability = self.catalog.get(model_id).capability("understand")
        capability.check_images(sum(len(m.images) for m in request.messages))
        request.params = capability.validate(request.params)
        return self._text(model_id, request, control or RunControl(time_limit_s=self.time_limit_s))

    def _image(self, task: str, model_id: str, request: Any, control: RunControl | None) -> ImageResult:
        for event in self._events(task, model_id, request, control or RunControl(time_limit_s=self.time_limit_s)):
            if event[0] == "result":
                return event[1]
        raise ReplicaLostError(f"The replica running {model_id} returned no result.")

    def _text(self, model_id: str, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        for event in self._events("understand", model_id, request, control):
            if event[0] == "chunk":
                yield event[1]

    def _events(self, task: str, model_id: str, request: Any, control: RunControl) -> Iterator[tuple]:
        """One run's events; retried on a replica lost before it produced output."""
        handle = self._handle.options(multiplexed_model_id=model_id, stream=True)
        with self._lock:
            self._inflight += 1
        try:
            for attempt in range(self.retries + 1):
                produced = finished = False
                response = handle.run.remote(task, request, control.time_limit_s)
                key = self._watcher.add(control, response)
                try:
                    for event in response:
                        kind = event[0]
                        if kind == "error":
                            finished = True
                            raise event[1]
                        if kind == "progress":
                            if control.on_progress is not None:
                                control.on_progress(*event[1:4])
                            continue
                        finished = kind in ("result", "done")
                        produced = True
                        yield event
                        if finished:
                            return
                    finished = True
                    raise ReplicaLostError(f"The replica running {model_id} ended the run without a result.")
                except CANCELLED as err:
                    finished = True
                    raise CancelledError("Stopped: the request was cancelled.") from err
                except RETRYABLE as err:
                    finished = True
                    if control.cancelled:
                        raise CancelledError("Stopped: the request was cancelled.") from err
                    if produced or attempt == self.retries:
                        raise ReplicaLostError(
                            f"The replica running {model_id} went away ({type(err).__name__}); "
                            "the deployment replaces it — try again."
                        ) from err
                    log.warning("replica lost before %s produced output (%s); retrying", model_id, err)
                finally:
                    self._watcher.discard(key)
                    if not finished:  # abandoned by the caller (closed stream, Stop): stop it on its replica
                        control.cancel()
                        response.cancel()
        finally:
            with self._lock:
                self._inflight -= 1
            self._states = (0.0, [])


# -- cluster ----------------------------------------------------------------------------------------
def ray_settings(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config.get("ray") or {})


def init_ray(address: str | None = None, *, num_cpus: int | None = None, include_dashboard: bool | None = None) -> bool:
    """Connect to ``address`` (or a running local cluster); else start a local one. True if started here."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    env.update({k: os.environ[k] for k in ("HF_HUB_OFFLINE", "HF_HOME", "UMM_TINY_DIR") if k in os.environ})
    runtime_env = {"env_vars": env}
    if address != "local":
        try:
            ray.init(address=address or "auto", namespace=dep.NAMESPACE, runtime_env=runtime_env,
                     log_to_driver=False)
            return False
        except ConnectionError:
            if address:
                raise
    for attempt in (1, 2):  # a starved machine can miss Ray's fixed 30 s node start-up window once
        try:
            ray.init(namespace=dep.NAMESPACE, runtime_env=runtime_env, num_cpus=num_cpus,
                     include_dashboard=include_dashboard, log_to_driver=False)
            return True
        except Exception as err:
            if attempt == 2 or "timed out during startup" not in str(err):
                raise
            log.warning("the local Ray node did not start in time; trying once more")
            ray.shutdown()
    return True


def deploy(
    catalog: Catalog, config: dict[str, Any], *, replicas: int | None = None, models_per_replica: int | None = None,
    gpus_per_replica: float | None = None, cpus_per_replica: float | None = None, **manager_overrides: Any,
) -> Any:
    """(Re)deploy the umm application and wait until its replicas are up; returns its handle."""
    settings = ray_settings(config)
    if gpus_per_replica is None:
        gpus_per_replica = settings.get("gpus_per_replica")
    if gpus_per_replica is None:  # auto: one GPU each where the cluster has GPUs
        gpus_per_replica = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    dep.board(create=True)
    serve.start(proxy_location="Disabled")
    app = dep.application(
        {
            "catalog": catalog,
            "config": config,
            "manager": manager_overrides,
            "models_per_replica": int(models_per_replica or settings.get("models_per_replica") or 1),
        },
        replicas=int(replicas or settings.get("replicas") or 1),
        gpus_per_replica=float(gpus_per_replica),
        cpus_per_replica=float(cpus_per_replica if cpus_per_replica is not None
                               else settings.get("cpus_per_replica", 1)),
        max_ongoing_requests=int(settings.get("max_ongoing_requests") or 64),
    )
    return serve.run(app, name=dep.APP, route_prefix=None)


def connect(
    catalog: Catalog, config: dict[str, Any], *, address: str | None = None, replicas: int | None = None,
    **manager_overrides: Any,
) -> RayBackend:
    """A backend on the running umm application; starts a local cluster and deploys it when there is none."""
    settings = ray_settings(config)
    wanted = int(replicas or settings.get("replicas") or 1) * float(settings.get("cpus_per_replica", 1))
    started = init_ray(address or settings.get("address"), num_cpus=max(os.cpu_count() or 1, int(wanted + 0.999)))
    handle = None
    if not started and replicas is None:
        try:
            handle = serve.get_app_handle(dep.APP)
        except RayServeException:
            handle = None
    if handle is None:
        handle = deploy(catalog, config, replicas=replicas, **manager_overrides)
    limit = {**(config.get("manager") or {}), **manager_overrides}.get("time_limit_s")
    return RayBackend(handle, catalog, time_limit_s=limit, retries=int(settings.get("retries", 2)))


def serve_forever(
    catalog: Catalog, config: dict[str, Any], *, replicas: int | None = None, address: str | None = None,
    detach: bool = False, **options: Any,
) -> int:
    """``python -m umm serve``: deploy, print the replicas, and keep serving until Ctrl-C."""
    settings = ray_settings(config)
    replicas = int(replicas or settings.get("replicas") or 1)
    cpus = options.get("cpus_per_replica")
    cpus = float(cpus if cpus is not None else settings.get("cpus_per_replica", 1))
    started = init_ray(address or settings.get("address") or "local",
                       num_cpus=max(os.cpu_count() or 1, int(replicas * cpus + 0.999)))
    deploy(catalog, config, replicas=replicas, **options)
    backend = RayBackend(serve.get_app_handle(dep.APP), catalog)
    deadline = time.monotonic() + 30
    while len(backend.replicas(max_age_s=0)) < replicas and time.monotonic() < deadline:
        time.sleep(0.5)
    for state in backend.replicas(max_age_s=0):
        print(f"replica {state['replica']} on {state['node']} ({state['device']}), pid {state['pid']}")
    print(f"umm is served by {replicas} replica(s). Connect with `python app.py --backend ray` "
          "(or UMM_BACKEND=ray for the CLI and the Python API) on a machine of this Ray cluster.")
    if detach and not started:
        return 0
    print("Ctrl-C stops serving.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    if not started:
        serve.delete(dep.APP)
    return 0
