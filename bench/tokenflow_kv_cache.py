"""TokenFlow next-scale sampling: KV cache vs recomputing every scale's whole sequence (upstream).

Both sides run the port's ``generate_codes`` on the same random-weight model, prompt rows and seed, at
the official schedule (9 scales, 817 image tokens after a 129-token prefix), interleaved (A, B, A, B …).
The block-causal mask by scale makes the cache exact, so the image tokens must be identical; the
record says whether they are, the ratio of medians end to end and for the LLM forwards alone (the
sampling over the vocabulary, identical on both sides, weighs much more at these sizes than at 7B), and
how many positions each side runs per row. Sizes: ``tiny`` (the test twin's LLM) and ``small`` (hidden 384,
6 layers, 1000 text tokens + 4096 codes).

    python bench/tokenflow_kv_cache.py            # tiny + small, 3 reps, loop strategies 1 and 3
    python bench/tokenflow_kv_cache.py --quick    # tiny only, 1 rep
"""

from __future__ import annotations

import argparse
import time

import torch
from common import interleave, line, machine, median, summarize, write_record

from umm.ports.tokenflow import LOOP_STRATEGIES, TokenLayout, build_llm, generate_codes
from umm.ports.tokenflow.tiny import TINY_VQ, randomise
from umm.ports.tokenflow.vq import TokenFlowPixelDecoder

SCALES = (1, 2, 4, 6, 8, 10, 12, 14, 16)
SIZES = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
             "text_vocab": 320, "codebook_size": 64},
    # body-heavy like the 7B (whose layers cost ~25x its vocabulary head per position), small enough for a CPU
    "small": {"hidden_size": 384, "intermediate_size": 1032, "num_attention_heads": 6, "num_hidden_layers": 6,
              "text_vocab": 1001, "codebook_size": 4096},
}


def build(size: str):
    s = SIZES[size]
    torch.manual_seed(0)
    vocab = s["text_vocab"] + s["codebook_size"]
    config = {
        "hidden_size": s["hidden_size"], "intermediate_size": s["intermediate_size"],
        "num_attention_heads": s["num_attention_heads"], "num_key_value_heads": s["num_attention_heads"],
        "num_hidden_layers": s["num_hidden_layers"], "vocab_size": vocab, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 4096, "mm_hidden_size": 40,
    }
    lm = build_llm(config, SCALES, device="cpu")
    lm.load_state_dict({k: randomise(k, v) for k, v in lm.state_dict().items()})
    vq = TokenFlowPixelDecoder({**TINY_VQ, "codebook_size": s["codebook_size"]})
    vq.load_state_dict({k: randomise(k, v) for k, v in vq.state_dict().items()})
    layout = TokenLayout(image_token_start=s["text_vocab"], pad_token_id=s["text_vocab"] - 1, bos_token_id=1,
                         img_ids=(3,))
    text = torch.randint(5, s["text_vocab"] - 1, (2, 20))
    rows = torch.cat([torch.full((2, 108), layout.pad_token_id), text, torch.full((2, 1), 3)], dim=1)
    rows[:, 108] = 1  # BOS after the left padding
    return lm.requires_grad_(False).eval(), vq.requires_grad_(False).eval(), layout, rows


def positions_run(prefix: int, loops: int) -> dict[str, int]:
    """Sequence positions each side pushes through the LLM per row (what dominates at 7B)."""
    cached = prefix + loops * sum(s * s for s in SCALES[1:])
    recompute, seen = 0, prefix
    for k, s in enumerate(SCALES):
        seen += s * s if k else 0
        recompute += (1 if k == 0 else loops) * seen
    return {"kv_cache": cached, "recompute": recompute}


def run(size: str, reps: int, strategies: list[int]) -> dict:
    lm, vq, layout, rows = build(size)
    out = {"params": sum(p.numel() for p in lm.parameters()), "strategies": {}}
    clock = {"started": 0.0, "total": 0.0}  # time inside the LLM forwards (the rest is sampling, shared)
    lm.register_forward_pre_hook(lambda *_: clock.update(started=time.perf_counter()))
    lm.register_forward_hook(lambda *_: clock.update(total=clock["total"] + time.perf_counter() - clock["started"]))
    for strategy in strategies:
        loops = LOOP_STRATEGIES[strategy]
        codes, forward = {}, {True: [], False: []}

        def sample(use_cache: bool, loops=loops, codes=codes, forward=forward):
            clock["total"] = 0.0
            codes[use_cache] = generate_codes(
                lm, vq, rows, layout, cfg=7.5, top_k=loops["top_k"], top_p=loops["top_p"],
                generator=torch.Generator("cpu").manual_seed(0), use_cache=use_cache,
            )
            forward[use_cache].append(clock["total"])

        times = interleave({"kv_cache": lambda: sample(True), "recompute": lambda: sample(False)}, reps=reps)
        identical = bool(torch.equal(codes[True], codes[False]))
        speedup = median(times["recompute"]) / median(times["kv_cache"])
        fwd = {name: forward[flag][1:] for name, flag in (("kv_cache", True), ("recompute", False))}  # no warm-up
        forward_speedup = median(fwd["recompute"]) / median(fwd["kv_cache"])
        positions = positions_run(rows.shape[1], len(loops["top_k"]))
        out["strategies"][str(strategy)] = {
            **summarize(times), "forward_only": summarize(fwd), "tokens_identical": identical,
            "speedup": round(speedup, 3), "forward_speedup": round(forward_speedup, 3),
            "positions_run_per_row": positions,
        }
        line(f"{size} loop {strategy}", f"cache {median(times['kv_cache']):.3f} s vs recompute "
             f"{median(times['recompute']):.3f} s: {speedup:.2f}x faster (LLM forwards alone "
             f"{median(fwd['kv_cache']):.3f} s vs {median(fwd['recompute']):.3f} s: {forward_speedup:.2f}x), "
             f"tokens identical: {identical}")
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny only, 1 rep, loop strategy 1")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    sizes, reps, strategies = (["tiny"], 1, [1]) if args.quick else (["tiny", "small"], args.reps, [1, 3])
    record = {
        "benchmark": "tokenflow_kv_cache", "machine": machine(), "scales": list(SCALES),
        "image_tokens": sum(s * s for s in SCALES), "prefix_tokens": 129, "rows": 2, "dtype": "float32",
        "sizes": {size: run(size, reps, strategies) for size in sizes},
    }
    write_record("tokenflow_kv_cache", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
