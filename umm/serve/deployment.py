"""The Ray Serve deployment: each replica is one :class:`~umm.manager.ModelManager` on one accelerator.

Residency stays the manager's (host cache, OOM recovery, time limits, cancel): Serve's model multiplexing
only decides *which replica* a request goes to. ``get_model`` asks the replica's manager to load, so with
``models_per_replica: 1`` a replica holds exactly what its manager holds, and requests tagged with
``multiplexed_model_id`` reach the replica that already has their model.

Every run is one streaming call that yields plain tuples: ``("progress", done, total, unit)``,
``("chunk", text)``, then ``("result", ImageResult, replica)`` or ``("done", None, replica)``, or
``("error", UmmError, replica)``; errors travel as data so the caller re-raises the user-facing error
itself. When the caller cancels the call, Serve cancels the coroutine here, and that cancels the run's
:class:`~umm.control.RunControl`, so the manager's lane frees within one step.

Replicas also report their state to a small named actor (the board) twice a second: what is resident,
how many loads (swaps) and runs they did, how many runs were cancelled. The client reads it for
``status()`` and tests read it to count swaps; entries of a dead replica age out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import serve

from umm.catalog import Catalog, load_app_config
from umm.control import RunControl
from umm.errors import AdapterError, UmmError
from umm.manager import ModelManager, manager_from_config

log = logging.getLogger(__name__)

APP = "umm"
DEPLOYMENT = "UmmReplica"
NAMESPACE = "umm"
BOARD = "umm-board"
HEARTBEAT_S = 0.5
STALE_S = 3.0
LOAD_ACTIONS = ("load", "from_host")


@ray.remote(num_cpus=0)
class Board:
    """Last reported state of each replica, and an unload epoch replicas pick up with their heartbeat."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}
        self._epoch = 0

    def report(self, state: dict[str, Any]) -> int:
        self._states[state["replica"]] = {**state, "seen": time.time()}
        return self._epoch

    def states(self, max_age_s: float = STALE_S) -> list[dict[str, Any]]:
        now = time.time()
        return sorted((s for s in self._states.values() if now - s["seen"] <= max_age_s), key=lambda s: s["replica"])

    def unload_all(self) -> int:
        self._epoch += 1
        return self._epoch


def board(create: bool = False) -> Any:
    if create:
        return Board.options(name=BOARD, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote()
    return ray.get_actor(BOARD, namespace=NAMESPACE)


class _Resident:
    """What Serve's multiplexing cache holds per model: only the id; the weights live in the manager."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id


class UmmReplica:
    def __init__(self, settings: dict[str, Any]) -> None:
        catalog = settings.get("catalog")
        if catalog is None:
            from umm.api import full_catalog

            tiny_root = settings.get("tiny_root")
            catalog = full_catalog(bool(settings.get("demo")), Path(tiny_root) if tiny_root else None)
        self.manager: ModelManager = manager_from_config(
            catalog, settings.get("config") or load_app_config(), **(settings.get("manager") or {})
        )
        self.catalog: Catalog = catalog
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id if context is not None else f"local-{os.getpid()}"
        self.actor_name = ray.get_runtime_context().get_actor_name()
        self.cancelled = 0
        self.active = 0
        self.stopped_after_steps: int | None = None
        # Serve's multiplexing, sized from configs/app.yaml, wired at init so N is data, not code.
        async def load_model(model_id: str) -> _Resident:  # a plain function: Serve keeps its LRU on it
            return await self._load_model(model_id)

        self.get_model = serve.multiplexed(max_num_models_per_replica=int(settings.get("models_per_replica") or 1))(
            load_model
        )
        self._board = board()
        self._epoch = ray.get(self._report(), timeout=30)  # unloads asked before this replica existed are done
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, name="umm-heartbeat", daemon=True).start()

    async def _load_model(self, model_id: str) -> _Resident:
        await asyncio.to_thread(self.manager.load, model_id)
        self._report()  # at once, not at the next heartbeat: status() should show the new resident
        return _Resident(model_id)

    # -- calls -----------------------------------------------------------------------------------
    async def run(self, task: str, request: Any, time_limit_s: float | None = None):
        """Run ``task`` for the request's multiplexed model id and stream its events (see the module doc)."""
        model_id = serve.get_multiplexed_model_id()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple] = asyncio.Queue()

        def put(*event: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        control = RunControl(time_limit_s=time_limit_s, on_progress=lambda done, total, unit: put(
            "progress", done, total, unit))
        finished = False
        self.active += 1
        try:
            try:
                await self.get_model(model_id)
            except Exception as err:
                finished = True
                yield ("error", _user_error(err), self.replica)
                return
            threading.Thread(target=self._work, args=(task, model_id, request, control, put), daemon=True).start()
            while True:
                event = await events.get()
                if event[0] in ("result", "done", "error"):
                    finished = True
                    yield (*event, self.replica)
                    return
                yield event
        finally:
            self.active -= 1
            if not finished:  # the caller cancelled (Stop) or went away: stop the run at its next step
                control.cancel()
                self.cancelled += 1
                log.info("run of %s on %s cancelled by the caller", model_id, self.replica)

    def _work(self, task: str, model_id: str, request: Any, control: RunControl, put) -> None:
        try:
            if task == "understand":
                for chunk in self.manager.understand(model_id, request, control):
                    put("chunk", chunk)
                put("done", None)
            elif task in ("generate", "edit"):
                put("result", getattr(self.manager, task)(model_id, request, control))
            else:
                raise ValueError(f"not a task: {task}")
        except Exception as err:
            put("error", _user_error(err))
        finally:
            if control.cancelled:
                self.stopped_after_steps = control.steps  # proof for tests that Stop ended the run early

    async def load(self) -> dict[str, Any]:
        model_id = serve.get_multiplexed_model_id()
        await self.get_model(model_id)
        await asyncio.to_thread(self.manager.load, model_id)  # also after an unload that Serve cannot see
        return self.state()

    def state(self) -> dict[str, Any]:
        events = list(self.manager.events)
        return {
            "replica": self.replica,
            "actor_name": self.actor_name,
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.manager.device),
            "resident": self.manager.resident_id,
            "cached": self.manager._host.keys(),
            "loads": sum(e.action in LOAD_ACTIONS for e in events),
            "runs": len(self.manager.runs),
            "cancelled": self.cancelled,
            "stopped_after_steps": self.stopped_after_steps,
            "active": self.active,
            "busy": self.manager._lane.locked(),
            "queue_depth": self.manager.queue_depth,
            "time_limit_s": self.manager.time_limit_s,
        }

    # -- heartbeat -------------------------------------------------------------------------------
    def _report(self) -> Any:
        return self._board.report.remote(self.state())

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a board restart or a slow tick must not kill the replica
                epoch = ray.get(self._report(), timeout=10)
                if epoch > self._epoch:
                    self._epoch = epoch
                    threading.Thread(target=self._unload, daemon=True).start()

    def _unload(self) -> None:
        self.manager.unload()
        self._report()

    def __del__(self) -> None:
        self._stop.set()


def _user_error(err: BaseException) -> UmmError:
    if isinstance(err, UmmError):
        return err
    log.exception("unexpected error in a replica")
    return AdapterError(f"The replica failed: {type(err).__name__}: {err}")


def application(
    settings: dict[str, Any], *, replicas: int = 1, gpus_per_replica: float = 1, cpus_per_replica: float = 1,
    max_ongoing_requests: int = 64,
) -> Any:
    """The bound Serve application; ``max_ongoing_requests`` is high so a model's replica queues its
    requests (in the manager's lane) instead of Serve spilling them to a replica that would swap."""
    deployment = serve.deployment(
        UmmReplica, name=DEPLOYMENT, num_replicas=replicas, max_ongoing_requests=max_ongoing_requests,
        ray_actor_options={"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica},
    )
    return deployment.bind(settings)
