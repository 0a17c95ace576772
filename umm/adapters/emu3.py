"""Emu3 (BAAI) on transformers' native ``Emu3ForConditionalGeneration``.

One family, two checkpoints: Emu3-Chat (understanding) and Emu3-Gen (text-to-image). Both are plain
next-token predictors over one vocabulary that holds text and VQ image tokens, so both tasks go through
``generate``:

* understanding streams text with our seeded sampler (:func:`umm.sampling.stream_generate`);
* generation asks the processor for its image-generation prompt (``return_for_image_generation``), then
  lets ``generate`` run the official recipe: classifier-free guidance against a negative prompt
  (``UnbatchedClassifierFreeGuidanceLogitsProcessor``), a ``prefix_allowed_tokens_fn`` that forces the
  image-token grid (an end-of-line token after every ``width`` visual tokens, then end-of-frame,
  end-of-image and end-of-sequence) and top-k sampling. ``generate`` builds its own processors first and
  appends ours after them (``_merge_criteria_processor_list``), so the order per token is
  CFG -> grid mask -> :class:`~umm.sampling.SeededSampler`: the sampler draws from the guided, masked
  distribution with the request's ``torch.Generator``, never the global RNG.

Token count grows with image area (one token per 8x8 pixels plus one end-of-line per row), so size is a
choice of area and aspect ratio. A checkpoint cannot attend past ``max_position_embeddings``; when the
requested grid would not fit, the area is scaled down until it does (the real Emu3-Gen fits its
native 720x720 grid; tiny test checkpoints have a short context and so produce small images through the
very same code).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch

from umm.adapters.base import TransformersAdapter, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import InputError
from umm.sampling import ControlStopping, SeededSampler
from umm.types import GenerateRequest, ImageResult, UnderstandRequest

log = logging.getLogger(__name__)

# The official prompts of the Emu3 image-generation example (github.com/baaivision/Emu3, README).
POSITIVE_SUFFIX = " masterpiece, film grained, best quality."
NEGATIVE_PROMPT = (
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry."
)
# The system turn of the upstream Emu3-Chat examples.
SYSTEM_PROMPT = "You are a helpful assistant."
DOWNSAMPLE = 8  # pixels per image token along each side (Emu3Processor assumes 8 as well)
END_TOKENS = 3  # end-of-frame, end-of-image, end-of-sequence after the grid


class Emu3Adapter(TransformersAdapter):
    family = "emu3"

    model_class = "Emu3ForConditionalGeneration"
    special_tokens: ClassVar[dict[str, tuple[str, ...]]] = {
        "": ("<image>", "<|image start|>", "<|image end|>", "<|image token|>", "<|extra_201|>", "<|extra_200|>",
             "<|visual token 000000|>"),
    }
    processor_class = "Emu3Processor"
    system_prompt = SYSTEM_PROMPT

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        super().load(device, dtype)
        self.processor.tokenizer.padding_side = "left"

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        return self.stream_chat(request, control)

    # -- generation ------------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        params = self.spec.capability("generate").validate(request.params)
        seed = resolve_seed(request.seed)
        prompt, negative = request.prompt, request.negative_prompt
        if params["quality_prompts"]:
            prompt = prompt + POSITIVE_SUFFIX
            negative = negative or NEGATIVE_PROMPT
        started = time.perf_counter()
        tokens, (height, width) = self.sample_image_tokens(
            prompt,
            negative,
            num_images=params["num_images"],
            image_area=int(params["image_area"]),
            ratio=str(params["aspect_ratio"]),
            guidance_scale=params["guidance_scale"],
            temperature=params["temperature"],
            top_k=params["top_k"],
            generator=self.generator(seed),
            control=control,
        )
        sampled = time.perf_counter()
        images = self.decode(tokens, height, width)
        info = self.run_info("generate", seed, params, prompt=request.prompt, negative_prompt=negative)
        info.timings = {"sample_s": sampled - started, "decode_s": time.perf_counter() - sampled}
        return ImageResult(images=images, info=info)

    def image_inputs(self, texts: list[str], image_area: int, ratio: str):
        return self.processor(
            text=texts, return_for_image_generation=True, image_area=image_area, ratio=ratio, return_tensors="pt"
        )

    def plan_grid(self, prompt: str, image_area: int, ratio: str) -> tuple[int, int, int]:
        """The token grid (height, width) for ``image_area`` pixels at ``ratio``, and the area used.

        The prompt, the grid (one end-of-line per row) and the end tokens must fit the model's context;
        when they do not, the area shrinks until they do.
        """
        limit = self.model.config.text_config.max_position_embeddings
        area, first_needed = image_area, None
        while True:
            inputs = self.image_inputs([prompt], area, ratio)
            height, width = (int(v) for v in inputs["image_sizes"][0])
            grid = height * (width + 1)
            needed = inputs["input_ids"].shape[1] + grid + END_TOKENS
            first_needed = first_needed or needed
            if needed <= limit or area <= DOWNSAMPLE**2:
                break
            # Tokens scale with area: jump close to the fitting area, then step down past rounding.
            area = max(DOWNSAMPLE**2, int(area * min(0.9, (limit - needed + grid) / max(grid, 1))))
        if height < 1 or width < 1 or needed > limit:
            raise InputError(f"The prompt is too long for {self.spec.name}'s context of {limit} tokens.")
        if area != image_area:
            log.warning(
                "%s: a %d px image needs %d tokens, more than its %d-token context; making %dx%d px instead",
                self.spec.id, image_area, first_needed, limit, width * DOWNSAMPLE, height * DOWNSAMPLE,
            )
        return height, width, area

    @torch.inference_mode()
    def sample_image_tokens(
        self,
        prompt: str,
        negative_prompt: str,
        *,
        num_images: int,
        image_area: int,
        ratio: str,
        guidance_scale: float,
        temperature: float,
        top_k: int,
        generator: torch.Generator,
        control: RunControl,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Sample ``num_images`` token sequences (grid + end tokens) and return them with the grid size."""
        height, width, area = self.plan_grid(prompt, image_area, ratio)
        inputs = self.image_inputs([prompt] * num_images, area, ratio)
        inputs.pop("image_sizes")
        # The official recipe builds the negative prompt in generation mode too, so both branches of the
        # guidance continue after the same image header.
        negative = self.image_inputs([negative_prompt] * num_images, area, ratio)
        inputs, negative = inputs.to(self.device), negative.to(self.device)
        prompt_len = inputs["input_ids"].shape[1]
        total = height * (width + 1) + END_TOKENS
        grid = GridConstraint(self.processor.tokenizer, self.model.vocabulary_mapping, height, width, prompt_len)
        stopping = ControlStopping(control, total)
        out = self.model.generate(
            **inputs,
            max_new_tokens=total,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            guidance_scale=guidance_scale,
            negative_prompt_ids=negative["input_ids"],
            negative_prompt_attention_mask=negative["attention_mask"],
            prefix_allowed_tokens_fn=grid,
            logits_processor=[SeededSampler(temperature=temperature, top_k=top_k, top_p=1.0, generator=generator)],
            stopping_criteria=[stopping],
        )
        stopping.reraise()  # cancel, time limit or a failing hook: never decode a truncated grid
        return out[:, prompt_len:], (height, width)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, height: int, width: int) -> list:
        pixels = self.model.decode_image_tokens(image_tokens=tokens, height=height, width=width)
        return self.processor.postprocess(list(pixels.float().cpu()), return_tensors="PIL.Image.Image")["pixel_values"]

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        """Emu3 text decoder, 8x VQ-VAE and processor, a few hundred KB, saved like the -hf repos."""
        from transformers import (
            Emu3Config,
            Emu3ForConditionalGeneration,
            Emu3ImageProcessor,
            Emu3Processor,
            GenerationConfig,
        )

        from umm.tiny import train_tokenizer

        codebook = 32
        specials = {"bos_token": "<|extra_203|>", "eos_token": "<|extra_204|>", "pad_token": "<|endoftext|>"}
        extra = {
            "image_token": "<image>",
            "boi_token": "<|image start|>",
            "eoi_token": "<|image end|>",
            "image_wrapper_token": "<|image token|>",
            "eof_token": "<|extra_201|>",
        }
        visual = [f"<|visual token {i:06d}|>" for i in range(codebook)]
        tokenizer = train_tokenizer(
            [*specials.values(), *extra.values(), "<|extra_200|>", *visual],
            vocab_size=384 + codebook,
            extra_special_tokens=extra,
            **specials,
        )
        tokenizer.padding_side = "left"
        config = Emu3Config(
            text_config={
                "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 80,
                "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id, "attention_dropout": 0.0,
            },
            vq_config={
                "codebook_size": codebook, "embed_dim": 4, "latent_channels": 4, "base_channels": 32,
                "channel_multiplier": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [3],
                "hidden_size": 32, "num_attention_heads": 1, "temporal_downsample_factor": 2,
            },
            vocabulary_map=tokenizer.get_vocab(),
        )
        torch.manual_seed(0)
        model = Emu3ForConditionalGeneration(config).eval()
        # A peaked output head, so sampling, seeds and guidance visibly matter on random weights.
        torch.nn.init.normal_(model.lm_head.weight, std=1.0)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model.save_pretrained(directory)
        image_processor = Emu3ImageProcessor(min_pixels=16 * 16, max_pixels=32 * 32, spatial_factor=DOWNSAMPLE)
        Emu3Processor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE).save_pretrained(directory)


# The chat template of the converted Emu3 checkpoints (transformers' convert_emu3_weights_to_hf.py):
# "<system> USER: <image>text ASSISTANT:"; real checkpoints ship their own copy.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


class GridConstraint:
    """``prefix_allowed_tokens_fn`` that forces an image of ``height`` x ``width`` tokens.

    Generated token ``k`` (0-based, counted after the prompt) is a visual token, except every
    ``width + 1``-th, which is the end-of-line token; after ``height`` rows come end-of-frame,
    end-of-image and end-of-sequence, then padding.
    """

    def __init__(self, tokenizer, mapping, height: int, width: int, prompt_len: int) -> None:
        self.height, self.width, self.prompt_len = height, width, prompt_len
        self.visual = torch.tensor(mapping.image_tokens, dtype=torch.long)
        ids = tokenizer.convert_tokens_to_ids
        self.eol = torch.tensor([mapping.eol_token_id])
        self.tail = [
            torch.tensor([ids(tokenizer.eof_token)]),
            torch.tensor([ids(tokenizer.eoi_token)]),
            torch.tensor([tokenizer.eos_token_id]),
        ]
        self.pad = torch.tensor([tokenizer.pad_token_id])

    def allowed(self, k: int) -> torch.Tensor:
        grid = self.height * (self.width + 1)
        if k < grid:
            return self.eol if (k + 1) % (self.width + 1) == 0 else self.visual
        return self.tail[k - grid] if k - grid < len(self.tail) else self.pad

    def __call__(self, batch_id: int, input_ids: torch.Tensor) -> torch.Tensor:
        return self.allowed(input_ids.shape[0] - self.prompt_len).to(input_ids.device)

