"""Show-o2 understanding: KV-cache decode vs upstream's recompute-everything decode, side by side.

Upstream's ``mmu_generate`` re-runs the whole sequence (image block included) for every new token; the
port prefills once with the omni mask and then decodes one token at a time from a ``DynamicCache``.
Both run on the same random model at the real layout (a 27×27 token image = 729 tokens + the chat
strings), greedy; the tokens must be identical (checked). Ratio = median recompute / median cached.

    python bench/showo2_kv_cache.py                 # a small random model (width 256, 4 layers), 32 new tokens
    python bench/showo2_kv_cache.py --quick --out-dir <dir>
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from common import line, summarize, write_record


def build(width: int, layers: int, vocab: int):
    from transformers import Qwen2Config, SiglipVisionConfig

    from umm.ports.showo2 import HeadConfig, Showo2Model

    torch.manual_seed(0)
    llm = Qwen2Config(vocab_size=vocab, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                      num_attention_heads=width // 64, num_key_value_heads=max(1, width // 256),
                      max_position_embeddings=4096)
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                image_size=378, patch_size=14)  # 27x27 table, as the real 384/14
    head = HeadConfig(hidden_size=64, head_dim=16, intermediate_size=128, num_attention_heads=4,
                      num_key_value_heads=2)
    config = {"llm_vocab_size": vocab, "hidden_size": width, "clip_latent_dim": 64, "image_latent_dim": 16,
              "patch_size": 2, "num_diffusion_layers": 1}
    return Showo2Model(config, llm, vision, head).eval()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from umm.ports.showo2 import decode

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke mode: a small model, few tokens")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.layers, args.tokens, args.reps = 128, 2, 4, 1
    model = build(args.width, args.layers, vocab=2048)
    prefix, image = 16, 27 * 27
    length = prefix + 2 + image + 1 + 12  # [bos sys role_a] boi TIME IMAGE×729 eoi question role_b
    block = (prefix + 2, image + 1)
    with torch.inference_mode():
        embeds = torch.randn(1, length, args.width) * 0.5
        times: dict[str, list[float]] = {"cached": [], "recompute": []}
        outputs: dict[str, list[int]] = {}
        for _ in range(args.reps):
            for name, use_cache in (("cached", True), ("recompute", False)):  # interleaved A/B
                started = time.perf_counter()
                outputs[name] = list(decode(model, embeds, block, max_new_tokens=args.tokens, eos=-1,
                                            pick=lambda logits: logits.argmax(), use_cache=use_cache))
                times[name].append(time.perf_counter() - started)
    same = outputs["cached"] == outputs["recompute"]
    stats = summarize(times)
    speedup = stats["recompute"]["median_s"] / stats["cached"]["median_s"]
    print(f"Show-o2 decode, width {args.width}, {args.layers} layers, sequence {length}, {args.tokens} new tokens")
    line("cached median", f"{stats['cached']['median_s']:.3f} s")
    line("recompute (upstream) median", f"{stats['recompute']['median_s']:.3f} s")
    line("speed-up", f"{speedup:.2f}x")
    line("tokens identical", str(same))
    record = {"width": args.width, "layers": args.layers, "sequence": length, "new_tokens": args.tokens,
              "times": stats, "speedup": speedup, "tokens_identical": same}
    write_record("showo2_kv_cache", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
