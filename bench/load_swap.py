"""Loading, swapping and eviction through the ModelManager, against bare transformers.

* cold load (checkpoint already in the page cache): ``ModelManager.load`` (processor + model) vs a bare
  ``JanusForConditionalGeneration.from_pretrained(dir, dtype, device_map=device)``. Target <= 1.2x.
* swap back from the host-RAM cache vs a cold load of the same model (both through the manager).
* eviction: ``manager.unload()`` to the host cache and with no host cache (drop). Target <= 50 ms.
* GPU only: swap efficiency eta = bytes moved / (swap time x host-to-device bandwidth measured in this
  run, pinned and pageable). Target >= 0.6. Without CUDA this prints a skip line.

Design note: the host cache moves modules with ``module.to(device)`` from ordinary (pageable) host
memory, so a host->device swap is bounded by pageable bandwidth, not pinned; see bench/README.md.

    python bench/load_swap.py                 # 300m checkpoint, 5 reps
    python bench/load_swap.py --quick --out-dir /tmp/x
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import (
    build_janus,
    collect,
    drop_page_cache_hint,
    interleave,
    janus_spec,
    line,
    median,
    ratio,
    summarize,
    verdict,
    write_record,
)

LOAD_TARGET, EVICT_TARGET_S, ETA_TARGET = 1.2, 0.050, 0.6


def h2d_bandwidth(nbytes: int, *, pinned: bool, reps: int = 5) -> float:
    """Host-to-device bytes/s of one large copy (median of ``reps``)."""
    src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    times = []
    for _ in range(reps + 1):
        torch.cuda.synchronize()
        started = time.perf_counter()
        dst.copy_(src, non_blocking=pinned)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    del src, dst
    return nbytes / median(times[1:])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="300m", help="tiny | 300m")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default=None, help="default: cuda if available else cpu")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny model, 1 rep (smoke test)")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.reps = "tiny", 1

    from transformers import JanusForConditionalGeneration

    from umm.catalog import Catalog
    from umm.devices import torch_dtype
    from umm.manager import ModelManager

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with tempfile.TemporaryDirectory(prefix="umm-bench-") as tmp:
        root = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        big = build_janus(root / f"janus-{args.size}-default", args.size)
        small = build_janus(root / "janus-tiny-default", "tiny")
        drop_page_cache_hint(big)  # "cold" = from the page cache, the same for both sides
        spec_a, spec_b = janus_spec(big, "bench-a"), janus_spec(small, "bench-b")
        catalog = Catalog([spec_a, spec_b])
        dtype = torch_dtype(spec_a.dtype, device)
        print(f"\n== load/swap: {args.size} checkpoint ({spec_a.weight_bytes / 1e6:.0f} MB), device {device}, "
              f"{args.reps} reps ==")

        cold = ModelManager(catalog, device=device, host_cache_bytes=0)
        warm = ModelManager(catalog, device=device, host_cache_bytes=10 * spec_a.weight_bytes)
        holder: list[Any] = []

        def reset(name: str) -> None:
            holder.clear()
            if name == "ours_cold":
                cold.load(spec_b.id)  # drops A entirely (no host cache)
            elif name == "ours_from_host":
                warm.load(spec_a.id)
                warm.load(spec_b.id)  # A goes to the host cache
            collect()

        def bare() -> None:
            holder.append(
                JanusForConditionalGeneration.from_pretrained(big, dtype=dtype, device_map=str(device)).eval()
            )

        load_times = interleave(
            {
                "ours_cold": lambda: cold.load(spec_a.id),
                "bare_from_pretrained": bare,
                "ours_from_host": lambda: warm.load(spec_a.id),
            },
            reps=args.reps,
            warmup=1,
            setup=reset,
        )
        holder.clear()

        def reset_evict(name: str) -> None:
            (warm if name == "to_host" else cold).load(spec_a.id)
            collect()

        evict_times = interleave(
            {"to_host": warm.unload, "drop": cold.unload}, reps=args.reps, warmup=1, setup=reset_evict
        )
        moved = [e for e in warm.events if e.model_id == spec_a.id and e.action == "from_host"]

        record: dict[str, Any] = {
            "size": args.size,
            "device": str(device),
            "weight_bytes": spec_a.weight_bytes,
            "load": summarize(load_times),
            "evict": summarize(evict_times),
            "ratio_cold_vs_bare": round(ratio(load_times, "ours_cold", "bare_from_pretrained"), 4),
            "ratio_host_vs_cold": round(ratio(load_times, "ours_from_host", "ours_cold"), 4),
            "evict_to_host_s": round(median(evict_times["to_host"]), 6),
            "evict_drop_s": round(median(evict_times["drop"]), 6),
            "targets": {"cold_vs_bare": LOAD_TARGET, "evict_s": EVICT_TARGET_S, "eta": ETA_TARGET},
        }
        r = record["ratio_cold_vs_bare"]
        line("cold load: ours / bare from_pretrained",
             f"{median(load_times['ours_cold']):.3f} s / {median(load_times['bare_from_pretrained']):.3f} s "
             f"= {r:.3f}x  {verdict(r, LOAD_TARGET)}")
        line("swap back from host RAM / cold load",
             f"{median(load_times['ours_from_host']):.4f} s / {median(load_times['ours_cold']):.3f} s "
             f"= {record['ratio_host_vs_cold']:.4f}x")
        for what in ("to_host", "drop"):
            s = median(evict_times[what])
            line(f"eviction ({what})", f"{s * 1000:.1f} ms  {verdict(s, EVICT_TARGET_S)}")

        if device.type == "cuda":
            nbytes = min(spec_a.weight_bytes, 1 << 30)
            pinned, pageable = h2d_bandwidth(nbytes, pinned=True), h2d_bandwidth(nbytes, pinned=False)
            swap_s = median([e.seconds for e in moved[-args.reps:]])
            eta = spec_a.weight_bytes / (swap_s * pinned)
            record.update(h2d_pinned_Bps=pinned, h2d_pageable_Bps=pageable, swap_s=swap_s, eta=round(eta, 4),
                          eta_vs_pageable=round(spec_a.weight_bytes / (swap_s * pageable), 4))
            line("H2D bandwidth pinned / pageable", f"{pinned / 1e9:.1f} / {pageable / 1e9:.1f} GB/s")
            line("swap efficiency eta (vs pinned bandwidth)", f"{eta:.3f}  {verdict(eta, ETA_TARGET, at_most=False)}")
            line("  (vs pageable bandwidth)", f"{record['eta_vs_pageable']:.3f}")
        else:
            record["eta"] = None
            print("  SKIP swap efficiency eta: no CUDA device (host->device bandwidth is GPU-only)")
        cold.unload()
        warm.unload()
    write_record("load_swap", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
