"""Full-size generation on GPU with random weights built from the real configs (GPU only).

Janus-Pro-7B: text = Llama, 4096 hidden, 30 layers, 32 heads (32 kv), intermediate 11008, vocab 102400;
vision = SigLIP-L (1024 hidden, 24 layers, 16 heads, 384 px, patch 16 -> 576 image tokens);
VQ = 16384 codes x 8 dims. Official image settings: 384x384, 576 tokens, CFG 5, temperature 1, bf16.

Emu3 (Gen, 8B): transformers' Emu3Config defaults, which match the release: Llama-like, 4096 hidden,
32 layers, 32 heads with 8 kv heads, intermediate 14336, vocab 184622, max positions 9216. Official
720x720 -> 90x90 VQ tokens + 90 end-of-line tokens = 8190 new tokens (CFG 3). ``--emu3-tokens`` cuts it.

Variants (each behind a flag, interleaved A/B per repetition):
  janus: ``hf`` = model.generate(generation_mode="image") (transformers' loop, static cache);
         ``ours`` = JanusAdapter.sample_image_tokens (DynamicCache);
         ``static`` = the same CFG loop on a StaticCache (``--static``), optionally with the text model
         compiled (``--compile``, mode reduce-overhead = CUDA graphs).
  emu3:  ``hf`` = generate, dynamic cache; ``static`` = cache_implementation="static" (``--static``),
         ``compile`` = static + compile (``--compile``).
Reported: seconds per image, tokens/s, peak allocated memory, ratio to ``hf``.

    python bench/generation_gpu.py                    # needs CUDA; prints a SKIP line otherwise
    python bench/generation_gpu.py --tiny             # CPU, tiny configs: checks the code paths
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import build_janus, interleave, line, summarize, write_record

JANUS_PRO_7B = {
    "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 30, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 102400, "max_position_embeddings": 16384},
    "vision": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 384,
               "patch_size": 16, "num_image_tokens": 576, "projection_dim": 4096},
    "vq": {"embed_dim": 8, "num_embeddings": 16384, "projection_dim": 4096, "image_token_embed_dim": 4096},
}
EMU3_TEXT = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 184622}
EMU3_OFFICIAL_TOKENS = 90 * 91  # 720 px / 8 = 90 rows of 90 codes + an end-of-line token each
TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# -- Janus ----------------------------------------------------------------------------------------
def janus_model(tiny: bool, device: torch.device, dtype: torch.dtype, workdir: Path):
    """(adapter, model): random full-size Janus-Pro-7B (or the tiny one) with the offline tokenizer."""
    from common import janus_spec
    from transformers import JanusConfig, JanusForConditionalGeneration, JanusProcessor

    from umm.adapters.janus import JanusAdapter

    tiny_dir = build_janus(workdir / "janus-tiny", "tiny")  # tokenizer, processor, generation config
    processor = JanusProcessor.from_pretrained(tiny_dir)
    if tiny:
        model = JanusForConditionalGeneration.from_pretrained(tiny_dir, dtype=dtype).to(device).eval()
    else:
        tiny_config = JanusConfig.from_pretrained(tiny_dir)
        config = JanusConfig(
            text_config={**tiny_config.text_config.to_dict(), **JANUS_PRO_7B["text"]},
            vision_config=JANUS_PRO_7B["vision"],
            vq_config=JANUS_PRO_7B["vq"],
            image_token_id=tiny_config.image_token_id,
            tie_word_embeddings=False,
        )
        with torch.device(device), _default_dtype(dtype):
            model = JanusForConditionalGeneration(config).eval()
        model.generation_config = JanusForConditionalGeneration.from_pretrained(tiny_dir).generation_config
    adapter = JanusAdapter(janus_spec(tiny_dir, "bench-janus-gpu"))
    adapter.model, adapter.processor, adapter.device, adapter.dtype = model, processor, device, dtype
    return adapter, model


@torch.inference_mode()
def janus_static_loop(adapter, prompt: str, *, num_images: int, guidance: float, temperature: float,
                      generator: torch.Generator, compiled=None) -> torch.Tensor:
    """``sample_image_tokens`` on a StaticCache: fixed shapes, so the decode step can be CUDA-graphed."""
    from transformers import StaticCache

    from umm.sampling import sample_tokens

    model, device = adapter.model, adapter.device
    config = model.generation_config
    prompt_ids = adapter.image_prompt_ids(prompt)
    cond = prompt_ids.expand(num_images, -1)
    keep = (cond == config.bos_token_id) | (cond == config.generation_kwargs["boi_token_id"])
    rows = torch.cat([cond, cond.masked_fill(~keep, config.pad_token_id)])
    total = model.model.vision_model.config.num_image_tokens
    length = rows.shape[1] + total
    cache = StaticCache(config=model.config.text_config, max_cache_len=length)
    language_model = compiled or model.model.language_model
    embeds = model.get_input_embeddings()(rows)
    position = torch.arange(rows.shape[1], device=device)
    out = torch.empty((num_images, total), dtype=torch.long, device=device)
    for i in range(total):
        step = language_model if i else model.model.language_model  # prefill has its own shape: run it eager
        hidden = step(inputs_embeds=embeds, past_key_values=cache, cache_position=position,
                      use_cache=True).last_hidden_state[:, -1]
        logits = model.model.generation_head(hidden).float()
        cond_logits, uncond_logits = logits.chunk(2)
        token = sample_tokens(uncond_logits + guidance * (cond_logits - uncond_logits),
                              temperature=temperature, generator=generator)
        out[:, i] = token
        embeds = model.prepare_embeddings_for_image_generation(torch.cat([token, token])[:, None])
        position = position[-1:] + 1
    return out


def bench_janus(args, device, dtype, workdir: Path) -> dict[str, Any]:
    from umm.control import RunControl

    adapter, model = janus_model(args.tiny, device, dtype, workdir)
    total = model.model.vision_model.config.num_image_tokens
    n, guidance, prompt = args.num_images, 5.0, "a photo of a cat sitting on a red chair"
    ids = adapter.image_prompt_ids(prompt)
    compiled = None
    if args.compile:
        compiled = torch.compile(model.model.language_model, mode="reduce-overhead" if device.type == "cuda"
                                 else "default", fullgraph=False)

    def hf():
        torch.manual_seed(0)
        with torch.inference_mode():
            model.generate(ids, attention_mask=torch.ones_like(ids), generation_mode="image", guidance_scale=guidance,
                           num_return_sequences=n, do_sample=True, temperature=1.0, top_k=None, top_p=None)
        _sync(device)

    def ours():
        adapter.sample_image_tokens(prompt, num_images=n, guidance_scale=guidance, temperature=1.0,
                                    generator=adapter.generator(0), control=RunControl())
        _sync(device)

    cases = {"hf": hf, "ours": ours}
    if args.static or args.compile:
        cases["static" + ("+compile" if compiled else "")] = lambda: (janus_static_loop(
            adapter, prompt, num_images=n, guidance=guidance, temperature=1.0, generator=adapter.generator(0),
            compiled=compiled), _sync(device))
    return _run_cases("janus", cases, tokens=total * n, device=device, reps=args.reps,
                      params=sum(p.numel() for p in model.parameters()))


# -- Emu3 -----------------------------------------------------------------------------------------
def bench_emu3(args, device, dtype) -> dict[str, Any]:
    from transformers import Emu3Config, Emu3ForConditionalGeneration

    vocabulary_map = {"<image>": 3, "<|extra_200|>": 4}
    first_visual, codes = (5, 64) if args.tiny else (151854, 32768)  # the release's visual-token ids
    vocabulary_map.update({f"<|visual token {i:06d}|>": first_visual + i for i in range(codes)})
    if args.tiny:
        text = {**TINY_TEXT, "vocab_size": 1024, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
        config = Emu3Config(vocabulary_map=vocabulary_map, text_config=text,
                            vq_config={"codebook_size": 64, "base_channels": 32, "channel_multiplier": [1, 1],
                                       "embed_dim": 4, "latent_channels": 4})
    else:
        config = Emu3Config(vocabulary_map=vocabulary_map)
        for key, value in EMU3_TEXT.items():  # pin the sizes we claim, whatever the defaults become
            assert getattr(config.text_config, key) == value, (key, getattr(config.text_config, key), value)
    with torch.device(device), _default_dtype(dtype):
        model = Emu3ForConditionalGeneration(config).eval()
    tokens = 32 if args.tiny else args.emu3_tokens
    # CFG (official 3.0) doubles the rows; transformers' UnbatchedCFG would add a second forward per token,
    # so --emu3-cfg batches cond/uncond rows the way the Janus loop does (batch 2).
    prompt = torch.randint(0, config.text_config.vocab_size, (2 if args.emu3_cfg else 1, 64), device=device)
    common = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": True, "top_k": 2048,
              "pad_token_id": 0, "eos_token_id": None}

    def run(**extra):
        def fn():
            torch.manual_seed(0)
            with torch.inference_mode():
                model.generate(prompt, attention_mask=torch.ones_like(prompt), **common, **extra)
            _sync(device)
        return fn

    cases = {"hf": run()}
    if args.static:  # transformers auto-compiles the decode step of a static cache on CUDA: disable it here
        cases["static"] = run(cache_implementation="static", disable_compile=True)
    if args.compile:
        cases["static+compile"] = run(cache_implementation="static")
    return _run_cases("emu3", cases, tokens=tokens * prompt.shape[0], device=device, reps=args.reps,
                      params=sum(p.numel() for p in model.parameters()))


# -- shared -----------------------------------------------------------------------------------------
def _run_cases(name: str, cases: dict, *, tokens: int, device: torch.device, reps: int, params: int) -> dict:
    peaks: dict[str, int] = {}

    def setup(case: str) -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    timed = {}
    for case, fn in cases.items():
        def wrapped(fn=fn, case=case):
            fn()
            if device.type == "cuda":
                peaks[case] = max(peaks.get(case, 0), torch.cuda.max_memory_allocated(device))
        timed[case] = wrapped
    started = time.perf_counter()
    times = interleave(timed, reps=reps, warmup=1, setup=setup)
    summary = summarize(times)
    result = {"parameters": params, "tokens_per_run": tokens, "cases": {}}
    base = summary["hf"]["median_s"]
    print(f"\n== {name}: {params / 1e9:.2f} B parameters, {tokens} tokens per run, {reps} reps "
          f"({time.perf_counter() - started:.0f} s) ==")
    for case, s in summary.items():
        entry = {**s, "tokens_per_s": round(tokens / s["median_s"], 2), "ratio_to_hf": round(s["median_s"] / base, 4),
                 "peak_allocated": peaks.get(case)}
        result["cases"][case] = entry
        peak = f", peak {entry['peak_allocated'] / 2**30:.1f} GiB" if entry["peak_allocated"] else ""
        line(f"{name} {case}", f"{s['median_s']:.3f} s/image, {entry['tokens_per_s']:.1f} tok/s, "
                               f"{entry['ratio_to_hf']:.3f}x hf{peak}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on CPU (code-path check, no CUDA)")
    parser.add_argument("--models", default="janus,emu3")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--emu3-tokens", type=int, default=EMU3_OFFICIAL_TOKENS)
    parser.add_argument("--emu3-cfg", action="store_true", help="batch cond+uncond rows (CFG) for Emu3")
    parser.add_argument("--static", action="store_true", help="add the static-KV-cache variants")
    parser.add_argument("--compile", action="store_true", help="add torch.compile (CUDA graphs on GPU) variants")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print("SKIP generation_gpu: no CUDA device here (full-size Janus-Pro-7B / Emu3 need a GPU); "
              "run with --tiny for a CPU check of the code paths.")
        return None
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    record: dict[str, Any] = {"tiny": args.tiny, "device": str(device), "dtype": str(dtype), "models": {}}
    with tempfile.TemporaryDirectory(prefix="umm-bench-") as tmp:
        for name in args.models.split(","):
            if name == "janus":
                record["models"]["janus"] = bench_janus(args, device, dtype, Path(tmp))
            elif name == "emu3":
                record["models"]["emu3"] = bench_emu3(args, device, dtype)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    write_record("generation_gpu" + ("_tiny" if args.tiny else ""), record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
