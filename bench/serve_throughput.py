"""Ray Serve backend: a mixed two-model workload on 1 vs 2 replicas, and the Ray path's per-request overhead.

One local Ray cluster (CPU replicas, one ModelManager each, ``models_per_replica: 1``) over two tiny twins
(tiny-janus, tiny-emu3), all in one run:

* **Throughput**: ``--clients`` threads send ``--requests`` requests in all, alternating the two models
  (short chats and single images). With 1 replica every change of model is a swap in its manager; with
  2 replicas Serve's multiplexed routing keeps each model on its own replica. Reported: requests/s, swaps
  (manager loads during the run, from the replicas' reports), and swaps avoided per second.
* **Overhead**: the same 1-token chat on a resident model, in-process ``ModelManager`` vs the Ray backend
  (1 replica, loopback), interleaved; p50/p95 of each and of the paired difference (target <= 10 ms p50).

    python bench/serve_throughput.py                 # 80 requests per setting, 4 clients, 60 overhead pairs
    python bench/serve_throughput.py --quick --out-dir /tmp/x
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import line, write_record

A, B = "tiny-janus", "tiny-emu3"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values) * 1e3, 3), "p95_ms": round(_percentile(values, 0.95) * 1e3, 3),
            "n": len(values)}


def _request(backend, model: str, n: int) -> None:
    from umm.types import GenerateRequest, Message, UnderstandRequest

    if n % 2:
        params = {"num_images": 1} if model == A else {"num_images": 1, "image_area": 65536}
        backend.generate(model, GenerateRequest("a red square", params=params, seed=n))
    else:
        request = UnderstandRequest([Message("user", "hi")], params={"max_new_tokens": 8, "temperature": 0.0}, seed=n)
        "".join(backend.understand(model, request))


def _loads(backend) -> dict[str, int]:
    return {s["replica"]: s["loads"] for s in backend.replicas(max_age_s=0)}


def _wait_replicas(backend, count: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while len(backend.replicas(max_age_s=0)) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} replicas did not report within {timeout_s} s")
        time.sleep(0.5)


def throughput(backend, requests: int, clients: int) -> dict[str, Any]:
    for model in (A, B, A, B):  # warm: both models loaded where routing puts them
        _request(backend, model, 0)
    time.sleep(1.0)  # replicas report their loads twice a second
    before = _loads(backend)
    per_client = requests // clients

    def client(index: int) -> None:
        for n in range(per_client):
            _request(backend, (A, B)[(index + n) % 2], n)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    time.sleep(1.0)
    after = _loads(backend)
    swaps = sum(after.get(r, 0) - before.get(r, 0) for r in after)
    residents = sorted(str(s["resident"]) for s in backend.replicas(max_age_s=0))
    return {"requests": per_client * clients, "seconds": round(seconds, 3),
            "requests_per_s": round(per_client * clients / seconds, 3), "swaps": swaps,
            "swaps_per_s": round(swaps / seconds, 3), "residents": residents}


def overhead(local, remote, pairs: int) -> dict[str, Any]:
    from umm.types import Message, UnderstandRequest

    def chat(backend) -> float:
        request = UnderstandRequest([Message("user", "hi")], params={"max_new_tokens": 1, "temperature": 0.0}, seed=0)
        started = time.perf_counter()
        "".join(backend.understand(A, request))
        return time.perf_counter() - started

    for _ in range(3):  # warm both sides (model resident, code paths hot)
        chat(local), chat(remote)
    times: dict[str, list[float]] = {"in_process": [], "ray": [], "difference": []}
    for _ in range(pairs):
        a, b = chat(local), chat(remote)
        times["in_process"].append(a)
        times["ray"].append(b)
        times["difference"].append(b - a)
    return {name: _ms(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=80)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="16 requests, 10 pairs")
    parser.add_argument("--cache-dir", help="keep the tiny twins between runs")
    parser.add_argument("--out-dir")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.pairs = 16, 10

    from umm.serve.ray_backend import RayBackend, deploy, init_ray  # noqa: I001 (first: Serve's routing settings)

    import ray
    import torch
    from ray import serve

    from umm.catalog import load_app_config, load_catalog
    from umm.manager import ModelManager
    from umm.tiny import build_tiny_catalog

    torch.set_num_threads(1)
    root = Path(args.cache_dir or tempfile.mkdtemp(prefix="umm-serve-bench-"))
    catalog = build_tiny_catalog(load_catalog(), root, families={"janus", "emu3"})
    config = load_app_config()
    config["ray"] = {**(config.get("ray") or {}), "models_per_replica": 1}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    init_ray("local", num_cpus=2, include_dashboard=False)
    record: dict[str, Any] = {"models": [A, B], "clients": args.clients, "requests": args.requests,
                              "pairs": args.pairs, "target_overhead_p50_ms": 10}
    try:
        results = {}
        for replicas in (1, 2):
            handle = deploy(catalog, config, replicas=replicas, gpus_per_replica=0, cpus_per_replica=1, device="cpu")
            backend = RayBackend(handle, catalog)
            _wait_replicas(backend, replicas)
            results[replicas] = throughput(backend, args.requests, args.clients)
            if replicas == 1:
                local = ModelManager(catalog, device="cpu")
                record["overhead"] = overhead(local, backend, args.pairs)
                local.unload()
        one, two = results[1], results[2]
        record["throughput"] = {"1_replica": one, "2_replicas": two}
        record["speedup_requests_per_s"] = round(two["requests_per_s"] / one["requests_per_s"], 3)
        record["swaps_avoided_per_s"] = round(one["swaps_per_s"] - two["swaps_per_s"], 3)
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"\nserve_throughput: {args.requests} mixed requests ({A} / {B} alternating), {args.clients} clients")
    print(f"  {'':<28} {'1 replica':>12} {'2 replicas':>12}")
    for key, label in (("requests_per_s", "requests/s"), ("swaps", "swaps"), ("swaps_per_s", "swaps/s")):
        print(f"  {label:<28} {one[key]:>12} {two[key]:>12}")
    line("2 vs 1 replica, requests/s", f"{record['speedup_requests_per_s']}x")
    line("swaps avoided per second", f"{record['swaps_avoided_per_s']}")
    o = record["overhead"]
    print(f"\n  1-token chat on a resident model  {'p50 ms':>10} {'p95 ms':>10}")
    for name in ("in_process", "ray", "difference"):
        print(f"  {name:<33} {o[name]['p50_ms']:>10} {o[name]['p95_ms']:>10}")
    ok = o["difference"]["p50_ms"] <= record["target_overhead_p50_ms"]
    line("Ray overhead p50 (target <= 10 ms)", f"{o['difference']['p50_ms']} ms {'OK' if ok else 'over target'}")
    write_record("serve_throughput", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
