"""MMaDA 8B (Base, MixCoT): one bidirectional LLaDA transformer that diffuses text and MagViTv2 image tokens.

Two repos: the MMaDA checkpoint (MMaDA config.json, sharded safetensors in LLaDA names, the LLaDA
tokenizer), loaded into transformers' ``LlamaForCausalLM`` (:mod:`umm.ports.mmada`), and the
``magvitv2`` component (:mod:`umm.ports.magvitv2`).

* Chat / understanding: ``[<|mmu|> <|soi|> image <|eoi|>] chat prompt [MASK]×G`` filled in by
  semi-autoregressive block remasking; each block is streamed to the chat once all its tokens are
  committed. There is no KV cache (every step re-reads the whole sequence, both directions), so the cost
  is ``steps`` full forwards of prompt + G tokens: fewer steps is the speed knob.
* "Thinking mode" (MixCoT) prepends upstream's reasoning instruction; the reply then carries
  ``<think> … </think>`` before the answer, shown as text exactly as upstream's demo shows it.
* Text to image: guided MaskGIT over the N image tokens (:mod:`umm.ports.maskgit`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import InputError
from umm.types import GenerateRequest, ImageResult, UnderstandRequest

REPO_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer*", "special_tokens_map.json"]


class MmadaAdapter(Adapter):
    family = "mmada"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.model = None
        self.vq = None
        self.tokenizer = None
        self.ids = None
        self.num_image_tokens = 0

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import PreTrainedTokenizerFast

        from umm.ports.magvitv2.model import load_for
        from umm.ports.mmada.model import MmadaIds, load_model

        device = torch.device(device)
        with load_errors(self.spec):
            root = self.snapshot_dir(None, REPO_FILES)
            config = json.loads((root / "config.json").read_text(encoding="utf-8"))
            self.tokenizer = PreTrainedTokenizerFast.from_pretrained(root)
            self.ids = MmadaIds.from_tokenizer(
                self.tokenizer, config, int(self.spec.options.get("max_text_len", 512))
            )
            self.num_image_tokens = int(config.get("num_vq_tokens", 1024))
            self.model = load_model(str(root), config, dtype, device_map=str(device))
            self.vq = load_for(self, self.ids.codebook_size, device)
        self.device, self.dtype = device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.model, self.vq) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer",)

    @property
    def grid(self) -> int:
        return math.isqrt(self.num_image_tokens)

    # -- chat ------------------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        from umm.ports.mmada.generate import block_steps, generate_text, mmu_prefix

        capability = self.spec.capability("understand")
        images = [image for m in request.messages for image in m.images]
        capability.check_images(len(images))
        params = capability.validate(request.params)
        gen, block, steps = params["gen_length"], params["block_length"], params["steps"]
        try:
            total = sum(block_steps(gen, block, steps))
        except ValueError as err:
            raise InputError(f"{err}.") from None
        text = self.chat_prompt(request.messages, bool(params.get("thinking")))
        prompt = torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], device=self.device)
        if images:
            with torch.inference_mode():
                prompt = torch.cat([mmu_prefix(self.encode(images[0])[0], self.ids), prompt])
        length = prompt.shape[0]
        run = generate_text(
            self.model, prompt[None], self.ids, gen_length=gen, block_length=block, steps=steps,
            temperature=params["temperature"], cfg_scale=params["cfg_scale"], remasking=params["remasking"],
            generator=self.generator(resolve_seed(request.seed)),
        )
        shown = ""
        for done, step in enumerate(run, start=1):
            control.step(done, total, "steps")
            if not step.last_in_block:
                continue
            end = length + (step.block + 1) * block
            answer = self.tokenizer.decode(step.x[0, length:end].tolist(), skip_special_tokens=True)
            if answer.endswith("\ufffd") and end < length + gen:  # a character split across blocks: wait
                continue
            if answer.startswith(shown) and len(answer) > len(shown):
                yield answer[len(shown):]
                shown = answer

    def chat_prompt(self, messages, thinking: bool = False) -> str:
        """The chat template text; thinking mode prepends upstream's instruction to the last user turn."""
        from umm.ports.mmada.generate import THINK_PROMPT, chat_text

        turns = [(m.role, m.text) for m in messages]
        if thinking and turns:
            role, text = turns[-1]
            turns[-1] = (role, THINK_PROMPT + text)
        return chat_text(turns, self.tokenizer.bos_token)

    # -- text to image ---------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        from umm.ports.magvitv2.images import to_images
        from umm.ports.mmada.generate import t2i_generate

        params = self.spec.capability("generate").validate(request.params)
        seed = resolve_seed(request.seed)
        text = self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"]
        steps = params["steps"]
        started = time.perf_counter()
        with torch.inference_mode():
            codes = t2i_generate(
                self.model, self.ids, [list(text)] * params["num_images"], self.num_image_tokens, steps=steps,
                guidance_scale=params["guidance_scale"], temperature=params["temperature"],
                generator=self.generator(seed), on_step=lambda t: control.step(t.step + 1, steps, "steps"),
                device=self.device,
            )
            control.check()
            sampled = time.perf_counter()
            codes = codes.clamp(0, self.ids.codebook_size - 1)
            images = [to_images(self.vq.decode_indices(row[None], (self.grid, self.grid)))[0] for row in codes]
        info = self.run_info("generate", seed, params, prompt=request.prompt)
        info.timings = {"sample_s": sampled - started, "decode_s": time.perf_counter() - sampled}
        return ImageResult(images=images, info=info)

    def encode(self, image) -> torch.Tensor:
        from umm.ports.magvitv2.images import to_pixels

        resolution = self.grid * self.vq.downsample_factor
        return self.vq.encode(to_pixels(image, resolution).to(self.device, self.vq.dtype))[1]

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        from umm.ports.mmada.tiny import build_tiny_mmada

        build_tiny_mmada(Path(directory))
