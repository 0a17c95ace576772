"""Janus / Janus-Pro on transformers' native ``JanusForConditionalGeneration``.

Understanding goes through ``generate`` (streamed, seeded via :mod:`umm.sampling`). Image generation
runs its own token loop over the same modules that ``generate(generation_mode="image")`` uses: that
loop takes an explicit ``torch.Generator``, reports progress and honours cancel per image token, and
batches the conditional and unconditional rows of classifier-free guidance in one forward pass.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch

from umm.adapters.base import TransformersAdapter, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.sampling import sample_tokens
from umm.types import GenerateRequest, ImageResult, UnderstandRequest


class JanusAdapter(TransformersAdapter):
    family = "janus"
    model_class = "JanusForConditionalGeneration"
    special_tokens: ClassVar[dict[str, tuple[str, ...]]] = {
        "": ("<image_placeholder>", "<begin_of_image>", "<end_of_image>"),
    }
    processor_class = "JanusProcessor"

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        from transformers import GenerationMixin

        # Janus's own generate() drops logits_processor in text mode; the base class keeps it.
        return self.stream_chat(request, control, generate=functools.partial(GenerationMixin.generate, self.model))

    # -- generation ------------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        params = self.spec.capability("generate").validate(request.params)
        seed = resolve_seed(request.seed)
        started = time.perf_counter()
        tokens = self.sample_image_tokens(
            request.prompt,
            num_images=params["num_images"],
            guidance_scale=params["guidance_scale"],
            temperature=params["temperature"],
            generator=self.generator(seed),
            control=control,
        )
        sampled = time.perf_counter()
        images = self.decode(tokens)
        info = self.run_info("generate", seed, params, prompt=request.prompt)
        info.timings = {"sample_s": sampled - started, "decode_s": time.perf_counter() - sampled}
        return ImageResult(images=images, info=info)

    def image_prompt_ids(self, prompt: str) -> torch.Tensor:
        conversation = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = self.processor(text=text, generation_mode="image", return_tensors="pt")
        return inputs["input_ids"].to(self.device)

    @torch.inference_mode()
    def sample_image_tokens(
        self,
        prompt: str,
        *,
        num_images: int,
        guidance_scale: float,
        temperature: float,
        generator: torch.Generator,
        control: RunControl,
    ) -> torch.Tensor:
        """Sample ``num_images`` grids of image tokens with classifier-free guidance.

        The unconditional rows keep only BOS and the begin-of-image token (the rest is padding),
        exactly as the reference implementation builds them.
        """
        from transformers import DynamicCache

        model = self.model
        config = model.generation_config
        prompt_ids = self.image_prompt_ids(prompt)
        cond = prompt_ids.expand(num_images, -1)
        uncond = cond.clone()
        keep = (uncond == config.bos_token_id) | (uncond == config.generation_kwargs["boi_token_id"])
        uncond = uncond.masked_fill(~keep, config.pad_token_id)
        rows = torch.cat([cond, uncond])
        embeds = model.get_input_embeddings()(rows)
        mask = torch.ones(rows.shape, dtype=torch.long, device=self.device)
        cache = DynamicCache(config=model.config.text_config)
        total = model.model.vision_model.config.num_image_tokens
        out = torch.empty((num_images, total), dtype=torch.long, device=self.device)
        for i in range(total):
            hidden = model.model.language_model(
                inputs_embeds=embeds, attention_mask=mask, past_key_values=cache, use_cache=True
            ).last_hidden_state[:, -1]
            logits = model.model.generation_head(hidden).float()
            cond_logits, uncond_logits = logits.chunk(2)
            guided = uncond_logits + guidance_scale * (cond_logits - uncond_logits)
            token = sample_tokens(guided, temperature=temperature, generator=generator)
            out[:, i] = token
            embeds = model.prepare_embeddings_for_image_generation(torch.cat([token, token])[:, None])
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            control.step(i + 1, total, "image tokens")
        return out

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> list:
        pixels = self.model.decode_image_tokens(tokens).float().permute(0, 3, 1, 2).cpu()
        return self.processor.postprocess(list(pixels), return_tensors="PIL.Image.Image")["pixel_values"]

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        """Llama text model, SigLIP-style vision tower and VQ decoder, all a few KB, saved like the hub."""
        save_random_janus(directory, **TINY_SIZES)


# Dimensions of the tiny checkpoint (VQ channels are multiples of 32 for GroupNorm; five VQ levels
# upsample 16x, so 4x4 image tokens decode to 64 px, as the vision config's image size says).
TINY_SIZES: dict = {
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4, "max_position_embeddings": 512},
    "vision": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
    "vq": {"embed_dim": 8, "num_embeddings": 64, "latent_channels": 32, "base_channels": 32,
           "channel_multiplier": [1, 1, 1, 1, 1], "num_res_blocks": 1},
    "image_size": 64,
}


def save_random_janus(directory: Path, *, text: dict, vision: dict, vq: dict, image_size: int, patch: int = 16) -> None:
    """A random-weights Janus checkpoint of any size in the hub layout (model + processor), offline.

    ``text`` holds Llama sizes (``vocab_size`` defaults to the offline tokenizer's), ``vision`` the
    SigLIP tower's and ``vq`` the VQ model's; projections are tied to the text width.
    """
    from transformers import (
        GenerationConfig,
        JanusConfig,
        JanusForConditionalGeneration,
        JanusImageProcessorPil,
        JanusProcessor,
    )

    from umm.tiny import train_tokenizer

    specials = {
        "bos_token": "<｜begin▁of▁sentence｜>",
        "eos_token": "<｜end▁of▁sentence｜>",
        "pad_token": "<｜▁pad▁｜>",
    }
    image_tokens = {
        "image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"
    }
    tokenizer = train_tokenizer(
        [*specials.values(), *image_tokens.values()], extra_special_tokens=image_tokens, **specials
    )
    hidden = text["hidden_size"]
    num_tokens = (image_size // patch) ** 2
    config = JanusConfig(
        text_config={
            "model_type": "llama", "tie_word_embeddings": False, "max_position_embeddings": 4096,
            **text, "vocab_size": text.get("vocab_size") or len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            **vision, "image_size": image_size, "patch_size": patch, "projection_dim": hidden,
            "num_image_tokens": num_tokens,
        },
        vq_config={**vq, "projection_dim": hidden, "image_token_embed_dim": hidden},
        image_token_id=tokenizer.convert_tokens_to_ids(image_tokens["image_token"]),
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = JanusForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids(image_tokens["boi_token"])},
    )
    model.save_pretrained(directory)
    image_processor = JanusImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = JanusProcessor(
        image_processor, tokenizer, chat_template=TINY_CHAT_TEMPLATE, num_image_tokens=num_tokens
    )
    processor.save_pretrained(directory)


# The prompt format of the Janus-Pro chat template (system text, "<|User|>:"/"<|Assistant|>:" turns,
# one image placeholder per image), reproduced for tiny checkpoints; real ones ship their own.
JANUS_TURNS = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|User|>: {% else %}<|Assistant|>: {% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image_placeholder>{{ '\\n' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
    # newlines right after a tag are trimmed by the template engine; write them as expressions
    "{% if message['role'] == 'user' %}{{ '\\n\\n' }}{% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)
"""The turns of the Janus-Pro chat format, after BOS and any system text."""
TINY_CHAT_TEMPLATE = "{{ bos_token }}You are a helpful language and vision assistant.\n\n" + JANUS_TURNS

