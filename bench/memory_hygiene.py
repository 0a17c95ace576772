"""Memory hygiene over many swaps: does RSS (CPU) or allocated GPU memory creep up?

Every tiny model of the catalog (``build_tiny_catalog``), plus a second id per family so swaps happen
even with one family, is swapped in at random ``--swaps`` times through one ModelManager; after each
swap the model runs a short request (understand when it can, else generate) so caches and activations
are exercised too. RSS (and ``torch.cuda.memory_allocated`` on GPU) is sampled after each swap.
Growth = last - first sample after the first full round (every model loaded once). Verdict: growth
<= max(5 % of the first sample, 64 MB) on CPU; <= 1 MB allocated on GPU.

    python bench/memory_hygiene.py                      # 100 swaps, host cache of ~2 models
    python bench/memory_hygiene.py --quick --out-dir /tmp/x
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import collect, line, rss_bytes, write_record


def _exercise(manager, spec) -> None:
    from umm.types import GenerateRequest, Message, UnderstandRequest

    if spec.can("understand"):
        names = {p.name for p in spec.capability("understand").params}
        params = {"max_new_tokens": 2} if "max_new_tokens" in names else {}
        "".join(manager.understand(spec.id, UnderstandRequest([Message("user", "hi")], params=params, seed=0)))
    elif spec.can("generate"):
        names = {p.name for p in spec.capability("generate").params}
        params = {k: v for k, v in {"num_images": 1, "num_inference_steps": 1, "steps": 1}.items() if k in names}
        manager.generate(spec.id, GenerateRequest("a cat", params=params, seed=0))
    else:
        manager.load(spec.id)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--families", default=None, help="comma list (default: every family in the catalog)")
    parser.add_argument("--host-cache-models", type=float, default=2.0,
                        help="host cache budget in units of the largest tiny model (0 = no host cache)")
    parser.add_argument("--no-exercise", action="store_true", help="only swap, run nothing")
    parser.add_argument("--tiny-dir", default=None, help="where tiny checkpoints are built (default: temp)")
    parser.add_argument("--quick", action="store_true", help="janus only, 8 swaps (smoke test)")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.swaps, args.families = 8, args.families or "janus"

    from umm.catalog import Catalog, load_catalog
    from umm.manager import ModelManager
    from umm.tiny import build_tiny_catalog

    families = set(args.families.split(",")) if args.families else None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="umm-bench-") as tmp:
        tiny = build_tiny_catalog(load_catalog(), Path(args.tiny_dir or tmp), families)
        specs = [s for spec in tiny for s in (spec, spec.replace(id=f"{spec.id}-2", name=f"{spec.name} #2"))]
        catalog = Catalog(specs)
        largest = max(s.weight_bytes for s in specs)
        manager = ModelManager(catalog, device=device, host_cache_bytes=int(args.host_cache_models * largest))
        rng = random.Random(0)
        order = [s.id for s in specs] + [rng.choice(specs).id for _ in range(args.swaps)]
        print(f"\n== memory hygiene: {len(specs)} ids ({', '.join(sorted({s.family for s in specs}))}), "
              f"{args.swaps} random swaps after one round, device {device} ==")
        rss: list[int] = []
        gpu: list[int] = []
        swaps = 0
        previous = None
        for i, model_id in enumerate(order):
            spec = catalog.get(model_id)
            if args.no_exercise:
                manager.load(model_id)
            else:
                _exercise(manager, spec)
            swaps += model_id != previous
            previous = model_id
            if i >= len(specs) - 1:  # after the first full round
                collect()
                rss.append(rss_bytes())
                if device.type == "cuda":
                    gpu.append(torch.cuda.memory_allocated(device))
        manager.unload()

    growth = rss[-1] - rss[0]
    allowed = max(0.05 * rss[0], 64e6)
    record: dict[str, Any] = {
        "ids": [s.id for s in specs],
        "swaps_requested": args.swaps,
        "model_changes": swaps,
        "host_cache_bytes": manager._host.budget,
        "rss_first": rss[0], "rss_last": rss[-1], "rss_max": max(rss), "rss_growth": growth,
        "rss_samples": rss,
        "rss_ok": growth <= allowed,
        "gpu_allocated_first": gpu[0] if gpu else None,
        "gpu_allocated_last": gpu[-1] if gpu else None,
        "gpu_allocated_max": max(gpu) if gpu else None,
        "gpu_ok": (gpu[-1] - gpu[0] <= 1 << 20) if gpu else None,
    }
    mb = 1e6
    line("model changes (of requested swaps)", f"{swaps} ({args.swaps})")
    line("RSS first / last / max", f"{rss[0] / mb:.1f} / {rss[-1] / mb:.1f} / {max(rss) / mb:.1f} MB")
    line("RSS growth", f"{growth / mb:+.1f} MB -> {'OK' if record['rss_ok'] else 'GROWING'} "
                       f"(allowed {allowed / mb:.0f} MB)")
    if gpu:
        line("GPU allocated first / last / max",
             f"{gpu[0] / mb:.1f} / {gpu[-1] / mb:.1f} / {max(gpu) / mb:.1f} MB -> "
             f"{'OK' if record['gpu_ok'] else 'GROWING'}")
    else:
        print("  SKIP GPU allocated-memory growth: no CUDA device")
    write_record("memory_hygiene", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
