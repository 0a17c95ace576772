"""JanusFlow text-to-image: the prompt's KV cache reused across steps vs upstream's full recompute.

Upstream (deepseek-ai/Janus ``demo/app_janusflow.py``) means to cache the prompt but its trimming loop
runs over an emptied list, so every Euler step feeds the whole ``[prompt, t_emb, 576 z tokens]``
sequence (for 2N rows) through the LLM again. The port computes the prompt's keys / values once and
feeds only ``[t_emb, z tokens]`` per step. Both run here on the same random model, noise and prompt,
interleaved in ABBA order, timed in CPU seconds (single thread), and their final latents are compared.

The saving is the prompt rows' LLM work per step (their projections and MLP, their rows of attention,
a (P + 577)^2 instead of 577 x (P + 577) mask), so it grows with the prompt length P; the UViT encoder /
decoder work is the same on both sides. Two prompt lengths are timed: a short demo-style prompt and a
long descriptive one.

    python bench/janusflow_kv_cache.py                  # the recorded run: tiny + small, P = 16 / 128, 6 steps, 6 reps
    python bench/janusflow_kv_cache.py --sizes small --reps 3
    python bench/janusflow_kv_cache.py --quick --out-dir OUT    # smoke mode (tests)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from common import line, median, param_count, summarize, write_record

# Random-weight configs (the official layout's config.json blocks); latents are the real 4x48x48.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"llm": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
             "siglip_width": 16, "gen_width": 16},
    "small": {"llm": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
                      "num_attention_heads": 4},
              "siglip_width": 32, "gen_width": 96},
}
LATENT = 48
PAD_ID = 2


def build(size: str):
    from umm.ports.janusflow import JanusFlowConfig, JanusFlowModel

    s = SIZES[size]
    hidden = s["llm"]["hidden_size"]
    uvit = {"hidden_size": hidden, "layers_in_middle": 2, "block_out_channels": [s["gen_width"]]}
    original = {
        "language_config": {"model_type": "llama", "vocab_size": 384, "max_position_embeddings": 1024,
                            "num_key_value_heads": s["llm"]["num_attention_heads"], **s["llm"]},
        "vision_und_enc_config": {"cls": "CLIPVisionTower", "params": {
            "model_name": "bench", "image_size": 16, "width": s["siglip_width"], "layers": 1, "heads": 2,
            "patch_size": 4, "mlp_ratio": 2.0}},
        "vision_gen_enc_config": {"cls": "ShallowUViTEncoder", "params": {
            **uvit, "input_channels": 4, "kernel_size": 2, "stride": 2}},
        "vision_gen_dec_config": {"cls": "ShallowUViTDecoder", "params": {
            **uvit, "in_channels": s["gen_width"], "out_channels": 4, "upsamples": 1}},
    }
    torch.manual_seed(0)
    model = JanusFlowModel(JanusFlowConfig.from_original(original)).eval()
    with torch.no_grad():  # GRN starts at zero upstream; give it weight so every path does work
        for name, param in model.named_parameters():
            if "channelwise_norm" in name:
                param.normal_(0, 0.5)
    return model


def interleave_clocks(cases, *, reps: int, warmup: int = 1):
    """Like ``common.interleave`` but in ABBA order (A, B, B, A, A, B, ... after a warm-up), so neither case
    always runs right after the other, timing both wall and process CPU time.

    Runs are single-threaded, so CPU seconds measure the work itself; on a shared machine wall time
    mostly measures the neighbours.
    """
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(warmup + reps):
        order = list(cases.items())
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            started, started_cpu = time.perf_counter(), time.process_time()
            fn()
            if rep >= warmup:
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - started_cpu)
    return wall, cpu


def run_size(size: str, *, reps: int, steps: int, prompt_lengths: list[int], num_images: int) -> dict[str, Any]:
    from umm.ports.janusflow import sample

    model = build(size)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((num_images, 4, LATENT, LATENT), generator=generator)
    out: dict[str, Any] = {"params": param_count(model), "steps": steps, "num_images": num_images,
                           "z_tokens": (LATENT // 2) ** 2, "prompts": {}}
    for length in prompt_lengths:
        ids = torch.randint(7, 384, (length + 1,), generator=generator)
        ids[0] = 0  # BOS; the last id stands for the image tag the sampler drops
        results: dict[str, torch.Tensor] = {}

        def run(use_cache: bool, ids=ids, results=results):
            results[str(use_cache)] = sample(model, ids, noise, steps=steps, cfg_weight=2.0, pad_id=PAD_ID,
                                             use_cache=use_cache)

        wall, cpu = interleave_clocks({"cached": lambda: run(True), "recompute": lambda: run(False)}, reps=reps)
        diff = (results["True"] - results["False"]).abs().max().item()
        speedup = median(cpu["recompute"]) / median(cpu["cached"])
        out["prompts"][str(length)] = {
            "cpu": summarize(cpu), "wall": summarize(wall),
            "speedup_cpu": round(speedup, 3),
            "speedup_wall": round(median(wall["recompute"]) / median(wall["cached"]), 3),
            "max_abs_diff_final_latents": diff,
            "prompt_share_of_llm_tokens": round(length / (length + 1 + out["z_tokens"]), 3),
        }
        line(f"{size} P={length} ({steps} steps, {2 * num_images} rows)",
             f"CPU s cached {median(cpu['cached']):.3f} vs recompute {median(cpu['recompute']):.3f}: "
             f"speed-up {speedup:.3f}x (wall {out['prompts'][str(length)]['speedup_wall']:.3f}x), "
             f"max |diff| {diff:.1e}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(SIZES))
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--prompt-lengths", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--quick", action="store_true", help="tiny only, 1 rep, 1 step (smoke test)")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.steps, args.images, args.prompt_lengths = ["tiny"], 1, 1, 1, [16]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU seconds then measure the work
    try:
        with torch.no_grad():
            sizes = {size: run_size(size, reps=args.reps, steps=args.steps, prompt_lengths=args.prompt_lengths,
                                    num_images=args.images) for size in args.sizes}
    finally:
        torch.set_num_threads(threads)
    record: dict[str, Any] = {
        "what": "JanusFlow rectified-flow sampling, prompt KV cache reused vs full recompute per step (upstream)",
        "sizes": sizes,
    }
    write_record("janusflow_kv_cache", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
