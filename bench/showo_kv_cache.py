"""Show-o understanding: our KV-cached decoding vs upstream's full recompute per token, side by side.

Same random Show-o language model (``PhiForCausalLM(qk_layernorm=True)`` at a reduced width, real prompt
length: ``<|mmu|> <|soi|>`` + 1024 image ids + ``<|eoi|>`` + BOS + a question), greedy, interleaved
A/B/A/B; the two token sequences must be identical (checked). Ratio = median cached / median recompute.

    python bench/showo_kv_cache.py                 # hidden 512, 8 layers, 1024 image tokens, 32 new tokens
    python bench/showo_kv_cache.py --quick --out-dir OUT   # smoke mode (tests)
"""

from __future__ import annotations

import argparse

import torch
from common import interleave, line, param_count, ratio, summarize, verdict, write_record

from umm.ports.showo.generate import mmu_tokens
from umm.ports.showo.model import NUM_NEW_SPECIAL_TOKENS, ShowoIds, phi_config

SIZES = {
    "quick": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_tokens": 64, "new_tokens": 4, "reps": 1},
    "mid": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 8, "num_attention_heads": 8,
            "image_tokens": 1024, "new_tokens": 32, "reps": 3},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--out-dir")
    args = parser.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "mid"])
    reps = args.reps or size.pop("reps")
    size.pop("reps", None)
    n_image, n_new = size.pop("image_tokens"), size.pop("new_tokens")
    torch.manual_seed(0)
    llm_vocab, codebook = 1000, 8192
    vocab = llm_vocab + NUM_NEW_SPECIAL_TOKENS + codebook + 1
    llm = {"model_type": "phi", "partial_rotary_factor": 0.5, "hidden_act": "gelu_new", **size}
    from transformers import PhiForCausalLM

    model = PhiForCausalLM(phi_config(llm, vocab)).eval()
    ids = ShowoIds(llm_vocab_size=llm_vocab, codebook_size=codebook, mask=vocab - 1, bos=0, eos=1,
                   num_image_tokens=n_image)
    image = torch.randint(0, codebook, (n_image,)) + ids.offset
    prompt = torch.cat([torch.tensor([ids.mmu, ids.soi]), image, torch.tensor([ids.eoi, ids.bos]),
                        torch.randint(2, llm_vocab, (16,))])
    outputs: dict[str, list[int]] = {}

    def run(cache: bool):
        def go():
            # eos never ends the run early: random weights, so stop only at n_new
            tokens = [t for t, _ in mmu_tokens(model, prompt, ids, max_new_tokens=n_new, use_cache=cache)]
            outputs["cached" if cache else "recompute"] = tokens
        return go

    times = interleave({"cached": run(True), "recompute": run(False)}, reps=reps)
    same = outputs["cached"] == outputs["recompute"]
    speed = ratio(times, "cached", "recompute")
    print(f"Show-o KV cache: {param_count(model) / 1e6:.1f}M params, prompt {len(prompt)} tokens, {n_new} new")
    line("identical tokens", str(same))
    line("cached / recompute (median time)", f"{speed:.3f} {verdict(speed, 1.0)}")
    record = {"size": {**size, "image_tokens": n_image, "new_tokens": n_new}, "prompt_tokens": len(prompt),
              "params": param_count(model), "identical_tokens": same, "ratio_cached_vs_recompute": speed,
              "times": summarize(times), "target_ratio": 1.0}
    write_record("showo_kv_cache", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
