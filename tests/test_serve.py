"""The backend interface: the in-process manager always; the Ray Serve deployment when ray is installed.

The same contract runs on both backends. The Ray tests share ONE local cluster (2 CPU replicas over two
tiny twins) set up by a module fixture; every wait is bounded. The replica-kill test runs last because it
disrupts the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from umm.catalog import Catalog, load_app_config
from umm.control import RunControl
from umm.errors import CancelledError, InputError, UmmError
from umm.serve.backend import BACKEND_ENV, Backend, backend_kind, make_backend
from umm.tiny import build_tiny_catalog
from umm.types import GenerateRequest, Message, UnderstandRequest

A, B = "tiny-janus", "tiny-emu3"
LONG_REPLY = 2048  # greedy tiny Janus never stops early: a run long enough (~6 s) to be stopped
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_models(real_catalog, tmp_path_factory) -> Catalog:
    root = Path(os.environ.get("UMM_TEST_TINY_DIR") or tmp_path_factory.mktemp("serve-tiny"))
    return build_tiny_catalog(real_catalog, root, families={"janus", "emu3"})


def gen_request(model: str, seed: int) -> GenerateRequest:
    params = {"num_images": 1} if model == A else {"num_images": 1, "image_area": 65536}
    return GenerateRequest("a red square", params=params, seed=seed)


def chat_request(seed: int, tokens: int = 8) -> UnderstandRequest:
    return UnderstandRequest([Message("user", "what is in this picture?")],
                             params={"max_new_tokens": tokens, "temperature": 0.0}, seed=seed)


def run_one(backend, model: str, task: str, seed: int):
    """One request; returns what identifies its output (pixels or text) to compare across backends."""
    if task == "generate":
        result = backend.generate(model, gen_request(model, seed))
        assert result.info.model_id == model
        return np.asarray(result.images[0]).tobytes()
    return "".join(backend.understand(model, chat_request(seed)))


def check_contract(backend) -> None:
    """generate with progress, streamed understanding, status, Stop; the same on every backend."""
    assert isinstance(backend, Backend)
    steps: list[tuple[int, int]] = []
    result = backend.generate(A, gen_request(A, 3), RunControl(on_progress=lambda d, t, u: steps.append((d, t))))
    assert result.info.model_id == A and len(result.images) == 1 and result.info.seed == 3
    assert steps and steps[-1][0] == steps[-1][1], steps  # progress reached the caller, up to the last step
    chunks = list(backend.understand(B, chat_request(0)))
    assert chunks and all(isinstance(c, str) for c in chunks)
    wait_for(lambda: backend.status(B) == "resident", what=f"{B} resident")
    with pytest.raises(InputError):  # validated before any lane: a bad parameter is the caller's error
        backend.generate(A, GenerateRequest("x", params={"num_images": 99}))

    # Stop: cancel the caller's control after a few tokens of a long reply
    control = RunControl()
    seen: list[int] = []

    def stop_early(done: int, total: int, unit: str) -> None:
        seen.append(done)
        if done >= 3:
            control.cancel()

    control.on_progress = stop_early
    started = time.monotonic()
    with pytest.raises(CancelledError):
        for _ in backend.understand(A, chat_request(0, tokens=LONG_REPLY), control):
            pass
    assert max(seen) < LONG_REPLY // 2, max(seen)
    assert time.monotonic() - started < 30
    assert run_one(backend, A, "understand", 1)  # the lane is free again


def wait_for(predicate, *, timeout_s: float = 60, what: str = "condition", interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


# -- the in-process backend (always) -----------------------------------------------------------------
def test_backend_kind_reads_the_flag_then_the_environment(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert backend_kind() == "local"
    monkeypatch.setenv(BACKEND_ENV, "Ray")
    assert backend_kind() == "ray"
    assert backend_kind("local") == "local"
    with pytest.raises(InputError, match="local, ray"):
        backend_kind("kubernetes")


def test_local_backend_is_the_manager_and_keeps_the_contract(two_models):
    from umm.manager import ModelManager

    backend = make_backend(two_models, load_app_config(), "local", device="cpu")
    assert type(backend) is ModelManager  # default path unchanged: no wrapper in between
    check_contract(backend)


def test_default_paths_never_import_ray():
    code = (
        "import sys, umm.api, umm.cli, umm.serve, umm.ui.main\n"
        "umm.ui.main.parse_args(['--backend', 'local'])\n"
        "umm.cli.build_parser().parse_args(['serve', '--replicas', '2'])\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=120)


# -- the Ray backend (only where ray is installed) ------------------------------------------------------
@pytest.fixture(scope="module")
def ray_backend(two_models):
    """ONE local cluster for the module: 2 CPU replicas, one ModelManager each, one model per replica."""
    pytest.importorskip("ray", reason="ray is an optional extra (requirements-ray.txt)")
    from umm.serve.ray_backend import RayBackend, deploy, init_ray  # noqa: I001 (first: Serve's routing settings)

    import ray
    from ray import serve

    config = load_app_config()
    config["ray"] = {**(config.get("ray") or {}), "models_per_replica": 1}
    box: dict = {}

    # On this thread: Ray's processes die with the thread that started them (PR_SET_PDEATHSIG).
    init_ray("local", num_cpus=2, include_dashboard=False)

    def start() -> None:
        try:
            box["handle"] = deploy(two_models, config, replicas=2, gpus_per_replica=0, cpus_per_replica=1,
                                   device="cpu")
        except BaseException as err:  # reported below
            box["error"] = err

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    starter.join(timeout=420)
    try:
        if starter.is_alive() or "error" in box:
            pytest.fail(f"the Ray cluster did not start: {box.get('error', 'timed out after 420 s')}")
        backend = RayBackend(box["handle"], two_models, time_limit_s=120, timeout_s=120)
        wait_for(lambda: len(backend.replicas(max_age_s=0)) == 2, what="2 replicas reporting")
        yield backend
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(two_models):
    """In-process outputs per (model, task, seed): what the right model gives for each request."""
    from umm.manager import ModelManager

    manager = ModelManager(two_models, device="cpu")
    cache: dict = {}

    def get(model: str, task: str, seed: int):
        if (model, task, seed) not in cache:
            cache[model, task, seed] = run_one(manager, model, task, seed)
        return cache[model, task, seed]

    return get


def warm(backend) -> dict[str, str]:
    """Alternate the two models until each replica holds one of them; returns {model: replica}."""

    def settled():
        for model in (A, B, A, B):
            run_one(backend, model, "understand", 0)
        residents = {s["resident"]: s["replica"] for s in backend.replicas(max_age_s=0)}
        return residents if set(residents) == {A, B} else None

    return wait_for(settled, timeout_s=90, what="one model per replica", interval_s=0.5)


def loads(backend) -> dict[str, int]:
    return {s["replica"]: s["loads"] for s in backend.replicas(max_age_s=0)}


@pytest.mark.ray
def test_ray_backend_keeps_the_contract(ray_backend):
    check_contract(ray_backend)
    wait_for(lambda: any(s["cancelled"] for s in ray_backend.replicas(max_age_s=0)), timeout_s=10,
             what=f"a replica to see the Stop ({ray_backend.replicas(max_age_s=0)})")
    wait_for(lambda: all(s["stopped_after_steps"] is not None for s in ray_backend.replicas(max_age_s=0)
                         if s["cancelled"]), what="the stopped run to end on its replica")
    steps = [s["stopped_after_steps"] for s in ray_backend.replicas(max_age_s=0) if s["cancelled"]]
    assert max(steps) < LONG_REPLY // 2, steps  # the replica's own run stopped early, not just the caller


@pytest.mark.ray
def test_the_web_app_runs_on_the_ray_backend(ray_backend, reference):
    """The app's own code path (build_app, stream_text, run_images) over the Ray backend, via gradio_client."""
    from conftest import served_app
    from gradio_client import Client

    with served_app(ray_backend) as app:
        client = Client(app.local_url, verbose=False)
        reply = client.predict(model_id=B, message="what is in this picture?", seed=0,
                               params={"max_new_tokens": 8, "temperature": 0.0}, api_name="/v1_chat")
        assert reply["text"] == reference(B, "understand", 0)
        out = client.predict(model_id=A, prompt="a red square", params={"num_images": 1}, seed=3,
                             api_name="/v1_generate")
        assert out["info"]["model_id"] == A and len(out["images_png_base64"]) == 1


@pytest.mark.ray
def test_two_models_in_alternation_are_served_without_swaps_once_warm(ray_backend, reference):
    placement = warm(ray_backend)
    before = loads(ray_backend)
    for index in range(12):
        model = (A, B)[index % 2]
        task = ("understand", "generate")[(index // 2) % 2]
        assert run_one(ray_backend, model, task, index) == reference(model, task, index)
    states = ray_backend.replicas(max_age_s=0)
    assert loads(ray_backend) == before, (before, states)  # no swap on either replica
    assert sorted(s["resident"] for s in states) == sorted([A, B])  # each replica reports one resident model
    assert {s["resident"]: s["replica"] for s in states} == placement


def mixed_clients(backend, reference, clients: int, per_client: int) -> tuple[int, int, list]:
    """``clients`` threads × ``per_client`` mixed requests; returns (ok, wrong model, errors)."""
    counts = {"ok": 0, "wrong": 0}
    errors: list = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for n in range(per_client):
            model = (A, B)[(index + n) % 2]
            task = ("understand", "generate")[(n // 2) % 2]
            seed = (index * per_client + n) % 6
            try:
                same = run_one(backend, model, task, seed) == reference(model, task, seed)
            except Exception as err:
                with lock:
                    errors.append(err)
                continue
            with lock:
                counts["ok" if same else "wrong"] += 1

    for model in (A, B):  # references first, so clients only wait for the cluster
        for task in ("understand", "generate"):
            for seed in range(6):
                reference(model, task, seed)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    return counts["ok"], counts["wrong"], errors


@pytest.mark.ray
def test_four_clients_mixed_requests_short(ray_backend, reference):
    warm(ray_backend)
    ok, wrong, errors = mixed_clients(ray_backend, reference, clients=4, per_client=5)
    assert (ok, wrong, errors) == (20, 0, [])


@pytest.mark.ray
@pytest.mark.slow
def test_four_clients_times_twenty_mixed_requests(ray_backend, reference):
    warm(ray_backend)
    before = loads(ray_backend)
    ok, wrong, errors = mixed_clients(ray_backend, reference, clients=4, per_client=20)
    assert (ok, wrong, errors) == (80, 0, [])
    assert sum(loads(ray_backend).values()) - sum(before.values()) <= 2, loads(ray_backend)


@pytest.mark.ray
def test_unload_reaches_every_replica(ray_backend):
    warm(ray_backend)
    ray_backend.unload()
    wait_for(lambda: all(s["resident"] is None for s in ray_backend.replicas(max_age_s=0)), timeout_s=30,
             what="every replica to unload")
    assert ray_backend.status(A) == "on disk" and ray_backend.resident_id is None
    ray_backend.load(A)
    wait_for(lambda: ray_backend.status(A) == "resident", what="an explicit load")


@pytest.mark.ray
def test_killing_a_replica_mid_run_fails_cleanly_and_the_cluster_recovers(ray_backend, reference):
    import ray

    from umm.serve.ray_backend import ReplicaLostError

    placement = warm(ray_backend)
    victim = next(s for s in ray_backend.replicas(max_age_s=0) if s["replica"] == placement[A])
    survivor = placement[B]
    outcomes: list[tuple[float, str, str]] = []  # (time, model, "ok" | "wrong" | error class)
    stop = threading.Event()
    lock = threading.Lock()

    def client(index: int) -> None:
        n = 0
        while not stop.is_set():
            model, task, seed = (A, B)[(index + n) % 2], ("understand", "generate")[n % 2], n % 3
            try:
                outcome = "ok" if run_one(ray_backend, model, task, seed) == reference(model, task, seed) else "wrong"
            except UmmError as err:  # a clean, user-facing error
                outcome = type(err).__name__
            except Exception as err:  # a raw Ray or Python error: fails the test below
                outcome = f"unclean {err!r}"
            with lock:
                outcomes.append((time.monotonic(), model, outcome))
            n += 1

    for model in (A, B):
        for task in ("understand", "generate"):
            for seed in range(3):
                reference(model, task, seed)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    killed = time.monotonic()
    ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)

    def recovered():
        live = {s["replica"] for s in ray_backend.replicas(max_age_s=0)}
        return len(live) == 2 and victim["replica"] not in live

    wait_for(recovered, timeout_s=120, what="Serve to replace the killed replica")
    healed = time.monotonic()
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"

    errors = [o for o in outcomes if o[2] not in ("ok", "wrong")]
    assert not [o for o in outcomes if o[2] == "wrong"], "a request got another model's output"
    assert all(o[2] == ReplicaLostError.__name__ for o in errors), errors
    during = [o for o in outcomes if killed < o[0] < healed]
    assert any(o[1] == B and o[2] == "ok" for o in during), "the surviving replica stopped serving"
    assert any(s["replica"] == survivor for s in ray_backend.replicas(max_age_s=0))
    for model in (A, B):  # the cluster serves both models again
        assert run_one(ray_backend, model, "understand", 0) == reference(model, "understand", 0)
