"""OmniGen2: Qwen2.5-VL for understanding and as the text encoder of a flow-matching image transformer.

The hub repo is laid out diffusers-style (``mllm/``, ``processor/``, ``transformer/``, ``vae/``,
``scheduler/``) and every part loads from its subfolder:

* ``mllm/`` — transformers' ``Qwen2_5_VLForConditionalGeneration``, loaded once and shared: it answers
  questions about images (streamed, seeded via :mod:`umm.sampling`) and, for generation and editing,
  encodes the instruction. As upstream does, the image pipeline shows the MLLM text only, wrapped in
  the tokenizer's chat template with the system prompt :data:`SYSTEM_PROMPT`, and takes the last
  hidden layer (after the final norm) as the transformer's text features.
* ``processor/`` — the Qwen2.5-VL tokenizer and image processor, loaded separately: transformers'
  ``Qwen2_5_VLProcessor`` cannot be built without torchvision (its video processor needs it), so the
  image-placeholder expansion the processor would do is done here (:func:`expand_image_tokens`).
* ``transformer/`` — the port in :mod:`umm.ports.omnigen2`, with its Euler sampler (time 0 → 1) and
  separate text / image guidance inside a CFG range.
* ``vae/`` — diffusers' ``AutoencoderKL`` (FLUX-style, 16 latent channels); latents are
  ``(z - shift_factor) * scaling_factor`` as upstream.
* ``scheduler/`` — only its ``dynamic_time_shift`` flag is read; the sampler is the port's own loop.

Reference images reach the transformer as VAE latents (up to 3 for edits). Initial noise comes from
an explicit ``torch.Generator`` (drawn as upstream draws it: one (N, C, h, w) tensor in the model
dtype), and the same generator then samples the VAE posteriors of the reference images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.sampling import stream_generate
from umm.types import EditRequest, GenerateRequest, ImageResult, Message, UnderstandRequest

SYSTEM_PROMPT = "You are a helpful assistant that generates high-quality images based on user instructions."
NEGATIVE_PROMPT = (
    "(((deformed))), blurry, over saturation, bad anatomy, disfigured, poorly drawn face, mutation, mutated, "
    "(extra_limb), (ugly), (poorly drawn hands), fused fingers, messy drawing, broken legs censor, censored, "
    "censor_bar"
)
MAX_INPUT_SIDE = 2048  # upstream demo default for max_input_image_side_length
MAX_SEQUENCE_LENGTH = 1024  # upstream passes max_sequence_length=1024 to the pipeline
IMAGE_TOKEN = "<|image_pad|>"


class OmniGen2Adapter(Adapter):
    family = "omnigen2"
    checkpoint_modules: ClassVar[dict[str, str]] = {
        "mllm": "transformers:Qwen2_5_VLForConditionalGeneration",
        "transformer": "umm.ports.omnigen2:OmniGen2Transformer2DModel",
        "vae": "diffusers:AutoencoderKL",
    }
    checkpoint_files = ("model_index.json", "scheduler/scheduler_config.json", "processor/tokenizer_config.json",
                        "processor/preprocessor_config.json")
    special_tokens: ClassVar[dict[str, tuple[str, ...]]] = {
        "processor": (IMAGE_TOKEN, "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"),
    }

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.mllm = None
        self.transformer = None
        self.vae = None
        self.tokenizer = None
        self.image_processor = None
        self.dynamic_time_shift = True
        self._hooks: list | None = None  # accelerate offload hooks, when cpu_offload is on

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        from umm.ports.omnigen2 import OmniGen2Transformer2DModel

        device = _exact(torch.device(device))
        offload = bool(self.spec.options.get("cpu_offload", False)) and device.type != "cpu"
        repo, source = self.spec.repo, self.source_kwargs()
        with load_errors(self.spec):
            self.tokenizer = AutoTokenizer.from_pretrained(repo, subfolder="processor", **source)
            if not self.tokenizer.chat_template:  # some saves keep it only at the processor level
                self.tokenizer.chat_template = _processor_chat_template(repo, source)
            self.image_processor = AutoImageProcessor.from_pretrained(repo, subfolder="processor", **source)
            scheduler = FlowMatchEulerDiscreteScheduler.load_config(repo, subfolder="scheduler", **source)
            self.dynamic_time_shift = bool(scheduler.get("dynamic_time_shift", True))
            self.mllm = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                repo,
                subfolder="mllm",
                dtype=dtype,
                device_map="cpu" if offload else str(device),
                **self.pretrained_kwargs(),
            ).eval()
            self.transformer = OmniGen2Transformer2DModel.from_pretrained(
                repo, subfolder="transformer", dtype=dtype, **self.pretrained_kwargs()
            ).eval()
            self.vae = AutoencoderKL.from_pretrained(
                repo, subfolder="vae", dtype=dtype, **self.pretrained_kwargs()
            ).eval()
        if offload:
            self._enable_offload(device)
        else:
            self.transformer.to(device)
            self.vae.to(device)
        self.device, self.dtype = device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.mllm, self.transformer, self.vae) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer", "image_processor", "_hooks")

    def to(self, device: torch.device) -> None:
        device = _exact(torch.device(device))
        if not self._hooks:
            super().to(device)
            return
        for hook in self._hooks:  # offloaded: weights stay in RAM, each goes to `device` when used
            hook.offload()
            hook.hook.execution_device = device
        self.device = device

    # -- model CPU offload (catalog option cpu_offload) --------------------------------------
    def _enable_offload(self, device: torch.device) -> None:
        """Keep the three models in RAM and move each to ``device`` only while it runs.

        accelerate's hooks chain mllm -> transformer -> vae (each forward offloads the previous model);
        ``_use`` does the same explicitly, since the VAE runs through encode/decode rather than forward.
        """
        from accelerate import cpu_offload_with_hook

        hook = None
        self._hooks = []
        for module in (self.mllm, self.transformer, self.vae):
            _, hook = cpu_offload_with_hook(module, execution_device=device, prev_module_hook=hook)
            self._hooks.append(hook)

    def _use(self, module: torch.nn.Module) -> None:
        if not self._hooks:
            return
        for hook in self._hooks:
            if hook.model is not module:
                hook.offload()
        module.to(self.device)

    def _offload_all(self) -> None:
        for hook in self._hooks or []:
            hook.offload()

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        params = self.spec.capability("understand").validate(request.params)
        seed = resolve_seed(request.seed)
        conversation, images = _conversation(request.messages)
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        inputs: dict[str, Any] = {}
        if images:
            vision = self.image_processor(images=images, return_tensors="pt")
            text = expand_image_tokens(text, vision["image_grid_thw"], self.image_processor.merge_size)
            inputs["pixel_values"] = vision["pixel_values"].to(self.device, self.dtype)
            inputs["image_grid_thw"] = vision["image_grid_thw"].to(self.device)
        tokens = self.tokenizer(text, return_tensors="pt")
        input_ids = tokens["input_ids"].to(self.device)
        image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        inputs.update(
            input_ids=input_ids,
            attention_mask=tokens["attention_mask"].to(self.device),
            mm_token_type_ids=(input_ids == image_token_id).int(),
        )
        self._use(self.mllm)
        try:
            yield from stream_generate(
                self.mllm,
                inputs,
                self.tokenizer,
                control,
                max_new_tokens=params["max_new_tokens"],
                temperature=params["temperature"],
                top_p=params["top_p"],
                generator=self.generator(seed),
            )
        finally:
            self._offload_all()

    # -- generation and editing --------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        params = self.spec.capability("generate").validate(request.params)
        return self._images("generate", request.prompt, request.negative_prompt, [], params, request.seed, control)

    def edit(self, request: EditRequest, control: RunControl) -> ImageResult:
        capability = self.spec.capability("edit")
        capability.check_images(len(request.images))
        params = capability.validate(request.params)
        return self._images(
            "edit", request.instruction, request.negative_prompt, request.images, params, request.seed, control
        )

    def _images(
        self,
        task: str,
        prompt: str,
        negative_prompt: str,
        images: list,
        params: dict[str, Any],
        seed: int | None,
        control: RunControl,
    ) -> ImageResult:
        from umm.ports.omnigen2 import Conditioning, sample

        seed = resolve_seed(seed)
        negative_prompt = negative_prompt or NEGATIVE_PROMPT
        text_scale = params["text_guidance_scale"]
        image_scale = params.get("image_guidance_scale", 1.0)
        num_images, max_pixels = params["num_images"], params["max_pixels"]
        timings: dict[str, float] = {}
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                self._use(self.mllm)
                text, mask = self.encode_prompt(prompt)
                negative = self.encode_prompt(negative_prompt) if text_scale > 1.0 else (None, None)
                timings["encode_text_s"] = time.perf_counter() - started

                pixels = [self.preprocess(image, max_pixels) for image in images]
                align = 2 * self.vae_scale_factor
                if len(pixels) == 1 and params.get("match_input_size", False):
                    height, width = pixels[0].shape[-2:]  # upstream's align_res: the output follows the input
                    out_size = (height, width)
                else:
                    out_size = (params["height"], params["width"])
                    height, width = _fit(params["height"], params["width"], max_pixels, align)
                generator = self.generator(seed)
                latents = torch.randn(
                    (
                        num_images,
                        self.transformer.config.in_channels,
                        height // self.vae_scale_factor,
                        width // self.vae_scale_factor,
                    ),
                    generator=generator,
                    device=generator.device,
                    dtype=self.dtype,
                )
                refs = []
                if pixels:
                    mark = time.perf_counter()
                    self._use(self.vae)
                    refs = [self.encode_image(p, generator) for p in pixels]
                    timings["encode_images_s"] = time.perf_counter() - mark

                mark = time.perf_counter()
                cond = Conditioning(text, mask, *negative, [list(refs)] * num_images if refs else None)
                self._use(self.transformer)
                latents = sample(
                    self.transformer,
                    cond,
                    latents=latents,
                    num_steps=params["steps"],
                    text_guidance_scale=text_scale,
                    image_guidance_scale=image_scale,
                    cfg_range=(params["cfg_range_start"], params["cfg_range_end"]),
                    dynamic_time_shift=self.dynamic_time_shift,
                    on_step=lambda done, total: control.step(done, total, "steps"),
                )
                timings["sample_s"] = time.perf_counter() - mark

                mark = time.perf_counter()
                self._use(self.vae)
                outputs = []
                for latent in latents:  # one at a time: VAE decoding at 1024² is the memory peak
                    control.check()
                    outputs.append(self.decode(latent[None], out_size))
                timings["decode_s"] = time.perf_counter() - mark
        finally:
            self._offload_all()
        info = self.run_info(task, seed, params, prompt=prompt, negative_prompt=negative_prompt)
        info.timings = timings
        return ImageResult(images=outputs, info=info)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Text features (1, L, D) and mask (1, L) of one instruction, as the upstream image pipeline builds them."""
        conversation = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
        tokens = self.tokenizer(
            [text], padding="longest", max_length=MAX_SEQUENCE_LENGTH, truncation=True, return_tensors="pt"
        )
        input_ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        # The final norm's output: what upstream's `hidden_states[-1]` is.
        hidden = self.mllm.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return hidden.to(self.dtype), mask.bool()

    def preprocess(self, image, max_pixels: int) -> torch.Tensor:
        """(1, 3, h, w) in [-1, 1]: downscaled (never up) to max_pixels / MAX_INPUT_SIDE, sides multiples of 16."""
        from diffusers.image_processor import VaeImageProcessor

        image = image.convert("RGB")
        align = 2 * self.vae_scale_factor
        ratio = min(math.sqrt(max_pixels / (image.width * image.height)), MAX_INPUT_SIDE / max(image.size), 1.0)
        height = max(align, int(image.height * ratio) // align * align)
        width = max(align, int(image.width * ratio) // align * align)
        processor = VaeImageProcessor(vae_scale_factor=align, resample="lanczos")
        return processor.preprocess(image, height=height, width=width)

    def encode_image(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One reference latent (C, h, w): a posterior sample, shifted and scaled as upstream."""
        config = self.vae.config
        z = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist.sample(generator=generator)
        if config.shift_factor is not None:
            z = z - config.shift_factor
        if config.scaling_factor is not None:
            z = z * config.scaling_factor
        return z[0].to(self.dtype)

    def decode(self, latents: torch.Tensor, size: tuple[int, int]):
        from diffusers.image_processor import VaeImageProcessor

        config = self.vae.config
        latents = latents.to(self.vae.dtype)
        if config.scaling_factor is not None:
            latents = latents / config.scaling_factor
        if config.shift_factor is not None:
            latents = latents + config.shift_factor
        image = self.vae.decode(latents, return_dict=False)[0].float()
        if tuple(image.shape[-2:]) != tuple(size):  # generated below the requested size (max_pixels)
            image = torch.nn.functional.interpolate(image, size=size, mode="bilinear")
        return VaeImageProcessor(do_resize=False).postprocess(image.cpu(), output_type="pil")[0]

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        """The official folder layout with a few-MB model in each part, all loaded by ``load`` as is."""
        import json

        from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        from umm.ports.omnigen2 import OmniGen2Transformer2DModel, tiny_transformer_config
        from umm.tiny import save_tiny_vae, train_tokenizer

        directory = Path(directory)
        vision_tokens = {
            "image_token": IMAGE_TOKEN,
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        }
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *vision_tokens.values()]
        tokenizer = train_tokenizer(
            specials, eos_token="<|im_end|>", pad_token="<|endoftext|>", extra_special_tokens=vision_tokens
        )
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}

        hidden = tiny_transformer_config()["text_feat_dim"]
        config = Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": hidden,
                "intermediate_size": 2 * hidden,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 2048,
                "tie_word_embeddings": True,
                # head dim 8 -> 4 rotary pairs, split over (time, height, width)
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": ids["<|im_end|>"],
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config={
                "depth": 1,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": hidden,
                "fullatt_block_indexes": [0],
                "window_size": 56,
            },
            image_token_id=ids[IMAGE_TOKEN],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        mllm = Qwen2_5_VLForConditionalGeneration(config).eval()
        mllm.generation_config = GenerationConfig(
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
            pad_token_id=ids["<|endoftext|>"],
        )
        mllm.save_pretrained(directory / "mllm")

        # processor/: tokenizer + Qwen2-VL image processor; few pixels so test images make few patches.
        tokenizer.save_pretrained(directory / "processor")
        Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56).save_pretrained(directory / "processor")

        OmniGen2Transformer2DModel(**tiny_transformer_config()).save_pretrained(directory / "transformer")
        save_tiny_vae(directory / "vae", scaling_factor=0.3611, shift_factor=0.1159)
        (directory / "scheduler").mkdir(parents=True, exist_ok=True)
        (directory / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(
                {
                    "_class_name": "FlowMatchEulerDiscreteScheduler",
                    "num_train_timesteps": 1000,
                    "dynamic_time_shift": True,
                },
                indent=2,
            )
        )
        (directory / "model_index.json").write_text(
            json.dumps(
                {
                    "_class_name": "OmniGen2Pipeline",
                    "mllm": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
                    "processor": ["transformers", "Qwen2_5_VLProcessor"],
                    "scheduler": ["omnigen2", "FlowMatchEulerDiscreteScheduler"],
                    "transformer": ["omnigen2", "OmniGen2Transformer2DModel"],
                    "vae": ["diffusers", "AutoencoderKL"],
                },
                indent=2,
            )
        )


# The Qwen2.5-VL chat format (default system turn, <|im_start|>role ... <|im_end|> turns, one
# <|vision_start|><|image_pad|><|vision_end|> per image), written out for tiny checkpoints; real ones ship
# their own template in processor/.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def expand_image_tokens(text: str, grid_thw: torch.Tensor, merge_size: int) -> str:
    """Repeat the k-th image placeholder once per merged patch of image k (what the Qwen processor does)."""
    parts = text.split(IMAGE_TOKEN)
    if len(parts) - 1 != len(grid_thw):
        raise ValueError(f"{len(parts) - 1} image placeholders for {len(grid_thw)} images")
    counts = [int(thw.prod()) // merge_size**2 for thw in grid_thw]
    return parts[0] + "".join(IMAGE_TOKEN * n + part for n, part in zip(counts, parts[1:], strict=True))


def _processor_chat_template(repo: str, source: dict[str, Any]) -> str:
    """The chat template saved beside the processor (chat_template.jinja or chat_template.json)."""
    import json

    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(repo, name, subfolder="processor", _raise_exceptions_for_missing_entries=False, **source)
        if path:
            text = Path(path).read_text(encoding="utf-8")
            return text if name.endswith(".jinja") else json.loads(text)["chat_template"]
    raise ValueError("processor/ has no chat template")


def _conversation(messages: list[Message]) -> tuple[list[dict], list]:
    """Chat-template messages (images first in each user turn) and the images in order."""
    conversation, images = [], []
    for message in messages:
        content = [{"type": "image"} for _ in message.images]
        # A literal placeholder in the text would desynchronise placeholders and images: drop it.
        content.append({"type": "text", "text": message.text.replace(IMAGE_TOKEN, "")})
        images.extend(image.convert("RGB") for image in message.images)
        conversation.append({"role": message.role, "content": content})
    return conversation, images


def _fit(height: int, width: int, max_pixels: int, align: int) -> tuple[int, int]:
    """The size generation runs at: at most max_pixels (the output is resized back), sides multiples of align."""
    ratio = min(math.sqrt(max_pixels / (height * width)), 1.0)
    return (
        max(align, int(height * ratio) // align * align),
        max(align, int(width * ratio) // align * align),
    )


def _exact(device: torch.device) -> torch.device:
    """cuda -> cuda:<current>, so device comparisons (accelerate's hooks) see equal devices as equal."""
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device
