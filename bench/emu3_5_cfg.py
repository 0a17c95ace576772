"""Emu3.5 image sampling: CFG as two batch-1 forwards per token vs one batch-2 forward (``batched``).

Random weights (no checkpoint needed) with the real layout: ``--size tiny`` (CPU smoke), ``mid`` (a
~0.5B Qwen3 with the real 282,926-token vocabulary, so the output head weighs what it does in the real
model relative to a layer), ``full`` (the inferred real config: 34.1B, GPU only, about 68 GB in bf16).
Both sides sample the same grid with the same seed through :func:`umm.ports.emu3_5.sampler.sample`;
the record holds s/image, tokens/s, the ratio, whether the ids agree, and the CUDA peak memory.

    python bench/emu3_5_cfg.py --quick                 # tiny, 3x4 grid, CPU (seconds)
    python bench/emu3_5_cfg.py --size mid --grid 8x8   # CPU, a few minutes
    python bench/emu3_5_cfg.py --size full --grid 55x73 --static   # GPU: one official 1024^2 image
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import interleave, line, machine, ratio, summarize, write_record

SIZES = {
    "tiny": dict(vocab_text=256, n_codes=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "mid": dict(vocab_text=151643, n_codes=131072, hidden_size=1024, intermediate_size=4096, num_hidden_layers=8,
                num_attention_heads=16, num_key_value_heads=4, head_dim=64),
    "full": dict(vocab_text=151643, n_codes=131072, hidden_size=5120, intermediate_size=25600, num_hidden_layers=64,
                 num_attention_heads=64, num_key_value_heads=8, head_dim=128),
}


def build(size: str, device: torch.device, dtype: torch.dtype, folder: Path):
    from transformers import Qwen3ForCausalLM

    from umm.ports.emu3_5 import Emu35Tokenizer, qwen3_config
    from umm.ports.emu3_5.tokenizer import BASE_SPECIALS, write_ranks
    from umm.ports.emu3_5.vocab import byte_order, write_tokenizer_files

    sizes = dict(SIZES[size])
    n_text, n_codes = sizes.pop("vocab_text"), sizes.pop("n_codes")
    write_tokenizer_files(folder, n_codes)
    if n_text > 256:  # filler merges so the specials land at the real ids (151643 ...)
        ranks = {bytes([b]): i for i, b in enumerate(byte_order())}
        ranks.update({f"<m{i}>".encode(): i for i in range(256, n_text)})
        write_ranks(folder / "emu3.tiktoken", ranks)
    tok = Emu35Tokenizer.from_dir(folder)
    vocab = n_text + len(BASE_SPECIALS) + 3 + n_codes
    config = qwen3_config({**sizes, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
                           "max_position_embeddings": 32768})
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(dtype).eval()
    return model, tok


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--grid", default="8x8", help="image grid in tokens, HxW (official 1024^2 4:3: 55x73)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--static", action="store_true", help="static KV caches (what the adapter uses on GPUs)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 3x4 grid, 1 rep")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.grid, args.reps = "tiny", "3x4", 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.size == "full" and device.type != "cuda":
        print("SKIP: --size full needs a GPU (about 68 GB in bf16)")
        return None
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    h, w = (int(v) for v in args.grid.lower().split("x"))
    from umm.ports.emu3_5 import Settings
    from umm.ports.emu3_5.prompts import t2i_prompts
    from umm.ports.emu3_5.sampler import sample

    with tempfile.TemporaryDirectory() as tmp:
        model, tok = build(args.size, device, dtype, Path(tmp))
    cond, uncond = (tok.encode(p) for p in t2i_prompts("a lighthouse on a cliff at sunset, oil painting"))
    tokens = 2 + len(f"{h}*{w}") + h * (w + 1)
    outputs: dict[str, list[int]] = {}

    def run(batched: bool):
        def go():
            outputs["batched" if batched else "two_forwards"] = sample(
                model, tok, cond, uncond, guidance_scale=5.0, text=Settings(), image=Settings(1.0, 5120, 1.0),
                max_new_tokens=tokens, generator=torch.Generator(device=device).manual_seed(0), target_hw=(h, w),
                start_image=True, stop_at_image_end=True, static_cache=args.static, batched=batched,
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
        return go

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    times = interleave({"two_forwards": run(False), "batched": run(True)}, reps=args.reps)
    same = sum(a == b for a, b in zip(outputs["two_forwards"], outputs["batched"], strict=False)) / tokens
    record = {
        "size": args.size, "grid": [h, w], "tokens": tokens, "static": args.static, "device": str(device),
        "dtype": str(dtype), "params": sum(p.numel() for p in model.parameters()),
        "times": summarize(times), "ratio_batched_vs_two": ratio(times, "batched", "two_forwards"),
        "tokens_per_s_batched": tokens / min(times["batched"]), "ids_agree": same,
        "peak_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None,
        "wall_s": time.perf_counter() - started, "machine": machine(),
    }
    line(f"{args.size} {h}x{w} ({tokens} tokens)", f"two forwards {min(times['two_forwards']):.3f} s, "
         f"batched {min(times['batched']):.3f} s, ratio {record['ratio_batched_vs_two']:.3f}, ids agree {same:.2f}")
    write_record("emu3_5_cfg", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
