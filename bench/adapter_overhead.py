"""Our full path (ModelManager + JanusAdapter) vs transformers called directly, same model and work.

Text: ``manager.understand`` (streamed through a worker thread, seeded sampler, cancel/progress hook)
vs ``model.generate(**processor(...), max_new_tokens=N, do_sample=False)`` then decode. Greedy on
both sides, so the replies must be identical (checked; same token count).

Image: ``manager.generate`` (our CFG token loop + VQ decode + postprocess to PIL) vs
``model.generate(generation_mode="image", guidance_scale, do_sample=True, temperature, top_k=None)``
+ ``decode_image_tokens`` + ``processor.postprocess``: same prompt, num_image_tokens, guidance and
temperature, seeded (our generator vs the global RNG, so the sampled tokens differ, the work does not).
The token loops alone (``sample_image_tokens`` vs image-mode ``generate``) are timed too, and a greedy
run of both checks that they produce the same tokens.

Both sides use the very same model object (the adapter's), interleaved A/B/A/B; ratio = median ours /
median transformers. Target: <= 1.03.

    python bench/adapter_overhead.py                    # tiny and 300m
    python bench/adapter_overhead.py --sizes tiny --reps 9
    python bench/adapter_overhead.py --quick --out-dir /tmp/x   # smoke mode (tests)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import (
    build_janus,
    interleave,
    janus_spec,
    line,
    param_count,
    ratio,
    summarize,
    verdict,
    write_record,
)

TARGET = 1.03
PROMPT_TEXT = "describe a photo of a cat sitting on a red chair in detail."
PROMPT_IMAGE = "a photo of a cat sitting on a red chair"


def run_size(size: str, *, root: Path, reps: int, text_tokens: int, image_size: int | None, guidance: float,
             num_images: int) -> dict[str, Any]:
    from umm.catalog import Catalog
    from umm.control import RunControl
    from umm.manager import ModelManager
    from umm.types import GenerateRequest, Message, UnderstandRequest

    directory = build_janus(root / f"janus-{size}-{image_size or 'default'}", size, image_size=image_size)
    spec = janus_spec(directory, f"bench-janus-{size}")
    manager = ModelManager(Catalog([spec]), device="cpu")
    manager.load(spec.id)
    with manager.lane(spec.id) as adapter:
        model, processor = adapter.model, adapter.processor
    n_tokens = model.model.vision_model.config.num_image_tokens
    print(f"\n== {size}: {param_count(model) / 1e6:.1f} M parameters, {n_tokens} image tokens, "
          f"{text_tokens} text tokens, {torch.get_num_threads()} threads ==")

    # -- text ----------------------------------------------------------------------------------
    text_params = {"max_new_tokens": text_tokens, "temperature": 0.0, "top_p": 1.0}
    replies: dict[str, str] = {}
    new_tokens: list[int] = []

    def ours_text() -> None:
        request = UnderstandRequest([Message("user", PROMPT_TEXT)], params=dict(text_params), seed=0)
        replies["ours"] = "".join(manager.understand(spec.id, request))

    def hf_text() -> None:
        conversation = [{"role": "user", "content": [{"type": "text", "text": PROMPT_TEXT}]}]
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = processor(text=prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=text_tokens, do_sample=False)
        generated = out[0, inputs["input_ids"].shape[1]:]
        new_tokens.append(int(generated.shape[0]))
        replies["transformers"] = processor.decode(generated, skip_special_tokens=True)

    text_times = interleave({"ours": ours_text, "transformers": hf_text}, reps=reps, warmup=1)
    text_match = replies["ours"] == replies["transformers"]

    # -- image: greedy token-match check (also the warm-up) ------------------------------------
    prompt_ids = adapter.image_prompt_ids(PROMPT_IMAGE)

    def ours_tokens(temperature: float) -> torch.Tensor:
        return adapter.sample_image_tokens(
            PROMPT_IMAGE, num_images=num_images, guidance_scale=guidance, temperature=temperature,
            generator=adapter.generator(0), control=RunControl(),
        )

    def hf_tokens(temperature: float) -> torch.Tensor:
        torch.manual_seed(0)
        sample = temperature > 0
        with torch.inference_mode():
            return model.generate(
                prompt_ids, attention_mask=torch.ones_like(prompt_ids), generation_mode="image",
                guidance_scale=guidance, num_return_sequences=num_images, do_sample=sample,
                temperature=temperature if sample else None, top_k=None, top_p=None,
            )

    greedy_ours, greedy_hf = ours_tokens(0.0), hf_tokens(0.0)
    token_match = float((greedy_ours == greedy_hf).float().mean())

    # -- image: full path vs generate + decode + postprocess ------------------------------------
    image_params = {"num_images": num_images, "guidance_scale": guidance, "temperature": 1.0}

    def ours_image() -> None:
        manager.generate(spec.id, GenerateRequest(PROMPT_IMAGE, params=dict(image_params), seed=0))

    def hf_image() -> None:
        tokens = hf_tokens(1.0)
        with torch.inference_mode():
            pixels = model.decode_image_tokens(tokens).float().permute(0, 3, 1, 2)
        processor.postprocess(list(pixels), return_tensors="PIL.Image.Image")

    image_times = interleave({"ours": ours_image, "transformers": hf_image}, reps=reps, warmup=0)
    loop_times = interleave(
        {"ours": lambda: ours_tokens(1.0), "transformers": lambda: hf_tokens(1.0)}, reps=reps, warmup=0
    )
    manager.unload()

    result = {
        "parameters": param_count(model),
        "num_image_tokens": n_tokens,
        "text_new_tokens": new_tokens[-1] if new_tokens else None,
        "text_replies_identical": text_match,
        "image_greedy_token_match": round(token_match, 4),
        "text": {"times": summarize(text_times), "ratio": round(ratio(text_times, "ours", "transformers"), 4)},
        "image": {"times": summarize(image_times), "ratio": round(ratio(image_times, "ours", "transformers"), 4)},
        "image_token_loop": {"times": summarize(loop_times),
                             "ratio": round(ratio(loop_times, "ours", "transformers"), 4)},
    }
    for what in ("text", "image", "image_token_loop"):
        times, r = result[what]["times"], result[what]["ratio"]
        line(f"{what}: ours / transformers (median of {reps})",
             f"{times['ours']['median_s']:.3f} s / {times['transformers']['median_s']:.3f} s "
             f"= {r:.3f}x  {verdict(r, TARGET)}")
    line("text replies identical (greedy)", f"{text_match} ({result['text_new_tokens']} new tokens)")
    line("image tokens identical (greedy, ours vs generate)", f"{token_match:.1%}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,300m", help="comma list of tiny,300m")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--image-size-300m", type=int, default=96,
                        help="generated image side for 300m (96 -> 36 image tokens; 384 -> 576, official)")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--cache-dir", default=None, help="where checkpoints are built (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="tiny only, 1 rep, few tokens (smoke test)")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    if args.quick:
        sizes, args.reps, args.text_tokens = ["tiny"], 1, 4
    with tempfile.TemporaryDirectory(prefix="umm-bench-") as tmp:
        root = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        results = {
            size: run_size(size, root=root, reps=args.reps, text_tokens=args.text_tokens,
                           image_size=args.image_size_300m if size == "300m" else None,
                           guidance=args.guidance, num_images=args.num_images)
            for size in sizes
        }
    record = {"target_ratio": TARGET, "reps": args.reps, "sizes": results}
    write_record("adapter_overhead", record, args.out_dir)
    return record


if __name__ == "__main__":
    main()
