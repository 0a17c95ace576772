"""Many users at once: concurrent gradio clients, random tasks and models, one lane, one resident model.

CI runs a reduced count; the full 8 × 50 is marked slow (``python -m pytest -m slow tests/test_stress.py``).
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")
from conftest import cheap_params, served_app
from gradio_client import Client, handle_file

from umm.manager import ModelManager

log = logging.getLogger(__name__)
ASSET = Path(__file__).resolve().parents[1] / "assets" / "cat.png"
CLIENTS = 8


class ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _one_request(client: Client, manager: ModelManager, rng: random.Random) -> tuple[str, str | None]:
    """Send one random valid request; return (asked model, model id the result carries or None)."""
    catalog = manager.catalog
    task = rng.choice([t for t in ("understand", "generate", "edit") if catalog.ids(t)])
    model_id = rng.choice(catalog.ids(task))
    spec = catalog.get(model_id)
    seed = rng.randrange(1000)
    if task == "generate":
        out = client.predict(model_id=model_id, prompt="a small red house", seed=seed,
                             **cheap_params(spec, task), api_name="/generate")
        return model_id, out[2]["model_id"]
    if task == "edit":
        out = client.predict(model_id=model_id, image=handle_file(ASSET), extra_images=None,
                             instruction="make it blue", seed=seed, **cheap_params(spec, task), api_name="/edit")
        return model_id, out[3]["model_id"]
    job = client.submit(model_id=model_id, message={"text": "What is this?", "files": []}, history=[], seed=seed,
                        **cheap_params(spec, task), api_name="/chat")
    history = job.result()[0]
    assert history[-1]["role"] == "assistant"
    return model_id, None  # chat output carries no id; the manager's run log is checked instead


def _assert_one_resident(manager: ModelManager) -> None:
    resident = None
    for event in manager.events:
        if event.action in ("load", "from_host"):
            assert resident is None, f"{event.model_id} loaded while {resident} was resident"
            resident = event.model_id
        elif event.action in ("unload", "to_host"):
            assert resident == event.model_id, f"{event.model_id} evicted but {resident} was resident"
            resident = None
        else:
            assert resident is None
        assert event.resident_after == resident


def run_stress(tiny_catalog, per_client: int) -> dict:
    manager = ModelManager(tiny_catalog, device="cpu", host_cache_bytes=10**9)
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    results: list[tuple[str, str | None]] = []
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    try:
        with served_app(manager) as app:

            def user(index: int) -> None:
                client = Client(app.local_url, verbose=False)
                rng = random.Random(index)
                for _ in range(per_client):
                    started = time.perf_counter()
                    try:
                        outcome = _one_request(client, manager, rng)
                    except BaseException as err:
                        with lock:
                            failures.append(err)
                        continue
                    with lock:
                        results.append(outcome)
                        latencies.append(time.perf_counter() - started)

            threads = [threading.Thread(target=user, args=(i,)) for i in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=1800)
            assert not any(t.is_alive() for t in threads), "a client hung"
    finally:
        logging.getLogger().removeHandler(errors)

    waits = sorted(manager.lane_waits)
    report = {
        "requests": CLIENTS * per_client,
        "answered": len(results),
        "failures": [repr(f) for f in failures],
        "wrong_model": [r for r in results if r[1] is not None and r[0] != r[1]]
        + [r for r in manager.runs if r[0] != r[1]],
        "server_errors": [r.getMessage() for r in errors.records],
        "swaps": sum(e.action in ("load", "from_host") for e in manager.events),
        # lane waits inside the manager (gradio's queue serialises first, so these stay small) …
        "p50_lane_wait_s": statistics.median(waits) if waits else 0.0,
        "p95_lane_wait_s": waits[int(0.95 * (len(waits) - 1))] if waits else 0.0,
        # … and what users felt: queue wait + swap + run, per request

        "p50_latency_s": statistics.median(latencies) if latencies else 0.0,
        "p95_latency_s": sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else 0.0,
    }
    print(f"\nstress: {report}")
    _assert_one_resident(manager)
    return report


def _check(report: dict) -> None:
    assert report["failures"] == []
    assert report["answered"] == report["requests"]
    assert report["wrong_model"] == []
    assert report["server_errors"] == []


def test_concurrent_users_reduced(tiny_catalog):
    _check(run_stress(tiny_catalog, per_client=4))


@pytest.mark.slow
def test_concurrent_users_full(tiny_catalog):
    _check(run_stress(tiny_catalog, per_client=50))
