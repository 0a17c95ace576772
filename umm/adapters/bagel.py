"""Bagel (ByteDance-Seed/BAGEL-7B-MoT): one MoT Qwen2 that chats about images, generates and edits.

The hub folder is flat and loads as published: ``ema.safetensors`` (everything but the VAE, official
names), ``ae.safetensors`` (the FLUX.1 AE in its original naming, converted to diffusers'
``AutoencoderKL`` at load time), ``llm_config.json``, ``vit_config.json`` and the Qwen2 tokenizer files.
The port is :mod:`umm.ports.bagel`; this adapter builds contexts the way upstream's
``InterleaveInferencer`` does:

* chat: each user turn appends its images (ViT blocks) then its text; answers are decoded greedily
  (or sampled at a temperature) after ``<|im_start|>`` until ``<|im_end|>``;
* text to image: the prompt segment, then Euler flow sampling of the latent block with text and image
  guidance inside the CFG interval and CFG-renorm;
* edit: the input's VAE block and ViT block, then the instruction; the output has the input's size after
  upstream's VAE resize;
* thinking: the think system prompt first; the model writes a plan (``<think> ... </think>``) that is
  appended to the conditional context before sampling. The plan is returned in ``info.text``.

Seeds: the initial noise is drawn on the CPU (as upstream's ``torch.randn``), the VAE posterior noise on
the model's device, each from a generator seeded with the request's seed, so a seed reproduces upstream's
``set_seed`` runs on CUDA (and, on CPU, the two draws come in upstream's order from one generator).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import InputError
from umm.types import EditRequest, GenerateRequest, ImageResult, Message, UnderstandRequest

log = logging.getLogger(__name__)

REPO_FILES = ["*.json", "*.txt", "ema.safetensors", "ae.safetensors"]
# app.py: vae_transform = ImageTransform(1024, 512, 16), vit_transform = ImageTransform(980, 224, 14);
# the long side is also bounded by what the position tables cover and the short side by half of it
# (the real tables give exactly app.py's values; tiny twins have small tables).
VAE_TRANSFORM = (1024, 512, 16)
VIT_TRANSFORM = (980, 224, 14)


class BagelAdapter(Adapter):
    family = "bagel"
    checkpoint_modules: ClassVar[dict[str, str]] = {"ema.safetensors": "", "ae.safetensors": ""}
    checkpoint_files = ("llm_config.json", "vit_config.json", "tokenizer_config.json")
    special_tokens: ClassVar[dict[str, tuple[str, ...]]] = {
        "": ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"),
    }

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.model = None
        self.vae = None
        self.tokenizer = None
        self.session = None
        self._hooks: list | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from accelerate import init_empty_weights
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        from umm.ports.bagel import Bagel, BagelConfig, Session, SpecialIds, load_autoencoder

        device = torch.device(device)
        offload = bool(self.spec.options.get("cpu_offload", False)) and device.type != "cpu"
        with load_errors(self.spec):
            root = self.snapshot_dir(allow_patterns=REPO_FILES)
            for name in ("ema.safetensors", "ae.safetensors", "llm_config.json", "vit_config.json"):
                if not (root / name).is_file():
                    raise FileNotFoundError(f"{name} is missing from {root}")
            self.tokenizer = AutoTokenizer.from_pretrained(str(root))
            ids = SpecialIds.from_tokenizer(self.tokenizer)
            config = BagelConfig.from_folder(root)
            with init_empty_weights():  # parameters on "meta", then the checkpoint's tensors are assigned
                model = Bagel(config)
            weights_device = "cpu" if offload else str(device)
            state = {k: v.to(dtype) for k, v in load_file(str(root / "ema.safetensors"), device=weights_device).items()}
            model.load_state_dict(state, strict=True, assign=True)
            del state
            self.model = model.to(weights_device).eval()
            self.vae = load_autoencoder(root / "ae.safetensors", device, dtype)
        if offload:
            self._offload_layers(device)
        self.session = Session(self.model, ids)
        self.device, self.dtype = device, dtype

    def _offload_layers(self, device: torch.device) -> None:
        """Decoder layers stay in RAM and visit ``device`` one at a time; everything else stays there."""
        from accelerate import cpu_offload

        for part in self._resident_parts():
            part.to(device)
        for layer in self.model.language_model.model.layers:
            cpu_offload(layer, execution_device=device)
        self._hooks = list(self.model.language_model.model.layers)

    def _resident_parts(self) -> list[torch.nn.Module]:
        """Every module but the decoder layers (~3.3 GB in bf16 at full size): the VAE, ViT, glue, embeddings, head."""
        lm = self.model.language_model
        glue = [m for m in self.model.children() if m is not lm]
        return [self.vae, *glue, lm.lm_head, lm.model.embed_tokens, lm.model.norm, lm.model.norm_moe_gen,
                lm.model.rotary_emb]

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.model, self.vae) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer", "session", "_hooks")

    def to(self, device: torch.device) -> None:
        if self._hooks:  # offloaded layers stay under accelerate's hooks (in RAM); move only the rest
            device = torch.device(device)
            for module in self._resident_parts():
                module.to(device)
            self.device = device
            return
        super().to(device)

    # -- helpers ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def transforms(self):
        from umm.ports.bagel import ImageTransform

        config = self.model.config
        vae_max = min(VAE_TRANSFORM[0], config.max_latent_size * config.latent_downsample)
        vit_max = min(VIT_TRANSFORM[0], config.vit_max_num_patch_per_side * config.vit.patch_size)
        return (
            ImageTransform(vae_max, min(VAE_TRANSFORM[1], vae_max // 2), config.latent_downsample),
            ImageTransform(vit_max, min(VIT_TRANSFORM[1], vit_max // 2), config.vit.patch_size),
        )

    def _picker(self, temperature: float, generator: torch.Generator):
        def pick(logits: torch.Tensor) -> int:
            if temperature <= 0:
                return int(logits.argmax())
            probs = torch.softmax(logits / temperature, dim=-1)
            return int(torch.multinomial(probs.to(generator.device), 1, generator=generator))

        return pick

    def _stream(self, context, max_length: int, temperature: float, generator, control: RunControl) -> Iterator[str]:
        """Decoded text chunks as tokens come (a chunk is held back while it ends in a partial character)."""
        from umm.sampling import detokenize

        tokens = self.session.decode(context, max_length, self._picker(temperature, generator))
        yield from detokenize(tokens, self.tokenizer, control, max_length)

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        from umm.ports.bagel import VLM_THINK_SYSTEM_PROMPT, Context

        params = self.spec.capability("understand").validate(request.params)
        generator = self.generator(resolve_seed(request.seed))
        vae_t, vit_t = self.transforms()
        with torch.inference_mode():
            context = Context()
            if params.get("think"):
                context = self.session.add_text(context, self.encode(VLM_THINK_SYSTEM_PROMPT))
            for message in _turns(request.messages):
                for image in message.images:  # the inferencer resizes with the VAE rule, then the ViT rule
                    context = self.session.add_vit_image(context, vit_t(vae_t.resize(image.convert("RGB"))))
                control.check()
                if message.text:
                    context = self.session.add_text(context, self.encode(message.text))
            # max_new_tokens answer tokens: upstream's max_length counts the fed <|im_start|> too
            finished = False
            try:
                yield from self._stream(context, params["max_new_tokens"] + 1, params["temperature"], generator,
                                        control)
                finished = True
            finally:
                if not finished:  # the consumer went away (or the run failed): stop, the lane frees now
                    control.cancel()

    # -- generation and editing --------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        params = self.spec.capability("generate").validate(request.params)
        height, width = params["height"], params["width"]
        step = self.model.config.latent_downsample
        largest = self.model.config.max_latent_size * step
        if height % step or width % step:
            raise InputError(f"Width and height must be multiples of {step} pixels; got {width}x{height}.")
        if max(height, width) > largest:  # only small twins have tables below the catalog's 1024 px
            scale = largest / max(height, width)
            height, width = (max(step, int(v * scale) // step * step) for v in (height, width))
            log.warning("%s: its position table covers %d px a side; making %dx%d px instead",
                        self.spec.id, largest, width, height)
        return self._images("generate", request.prompt, None, (height, width), params, request.seed, control)

    def edit(self, request: EditRequest, control: RunControl) -> ImageResult:
        capability = self.spec.capability("edit")
        capability.check_images(len(request.images))
        params = capability.validate(request.params)
        return self._images("edit", request.instruction, request.images[0], None, params, request.seed, control)

    def _images(self, task, prompt, image, size, params, seed, control: RunControl) -> ImageResult:
        from umm.ports.bagel import (
            GEN_THINK_SYSTEM_PROMPT,
            Branches,
            Guidance,
            empty_branches,
            sample_latents,
            with_image,
            with_text,
        )
        from umm.ports.bagel.autoencoder import encode_moments, sample_latent

        seed = resolve_seed(seed)
        device_gen = self.generator(seed)
        cpu_gen = device_gen if device_gen.device.type == "cpu" else torch.Generator("cpu").manual_seed(seed)
        guidance = Guidance(
            cfg_text_scale=params["cfg_text_scale"],
            cfg_img_scale=params["cfg_img_scale"],
            cfg_interval=(params["cfg_interval_start"], 1.0),  # app.py: the interval's end is fixed at 1.0
            cfg_renorm_min=params["cfg_renorm_min"],
            cfg_renorm_type=params["cfg_renorm_type"],
            num_timesteps=params["steps"],
            timestep_shift=params["timestep_shift"],
        )
        timings: dict[str, float] = {}
        plan = ""
        started = time.perf_counter()
        with torch.inference_mode():
            branches = empty_branches()
            if params.get("think"):
                branches = with_text(branches, self.session, self.encode(GEN_THINK_SYSTEM_PROMPT))
            if image is not None:
                vae_t, vit_t = self.transforms()
                resized = vae_t.resize(image.convert("RGB"))
                size = (resized.height, resized.width)
                from umm.ports.bagel.inference import to_tensor

                moments = encode_moments(self.vae, to_tensor(resized)[None].to(self.device))
                noise = torch.randn(moments[:, : moments.shape[1] // 2].shape, generator=device_gen,
                                    device=device_gen.device, dtype=torch.float32)
                latent = sample_latent(self.vae, moments, noise.to(moments.device))
                branches = with_image(branches, self.session, vit_t(resized), latent)
            branches = with_text(branches, self.session, self.encode(prompt))
            timings["context_s"] = time.perf_counter() - started
            if params.get("think"):
                mark = time.perf_counter()
                for chunk in self._stream(branches.cond, params["max_think_tokens"], params["think_temperature"],
                                          device_gen, control):
                    plan += chunk
                    control.text(chunk)  # shown while it is written
                cond = self.session.add_text(branches.cond, self.encode(plan))
                branches = Branches(cond, branches.text_uncond, branches.img_uncond)
                timings["think_s"] = time.perf_counter() - mark
            height, width = size
            config = self.model.config
            tokens = (height // config.latent_downsample) * (width // config.latent_downsample)
            outputs = []
            mark = time.perf_counter()
            count = params["num_images"]
            total = count * (guidance.num_timesteps - 1)
            for index in range(count):
                noise = torch.randn((tokens, config.patch_latent_dim), generator=cpu_gen, device="cpu")
                final = sample_latents(
                    self.session, branches, height, width, noise, guidance,
                    on_step=lambda done, _total, i=index: control.step(i * (guidance.num_timesteps - 1) + done,
                                                                       total, "steps"),
                )
                control.check()
                outputs.append(self._decode(final, height, width))
            timings["sample_decode_s"] = time.perf_counter() - mark
        info = self.run_info(task, seed, params, prompt=prompt)
        info.timings = timings
        if plan:
            info.text = plan
        return ImageResult(images=outputs, info=info)

    def _decode(self, tokens: torch.Tensor, height: int, width: int):
        from umm.ports.bagel import to_uint8, unpatchify
        from umm.ports.bagel.autoencoder import decode_latent

        config = self.model.config
        h, w = height // config.latent_downsample, width // config.latent_downsample
        latent = unpatchify(tokens, h, w, config.latent_patch_size, config.latent_channels)
        return to_uint8(decode_latent(self.vae, latent.to(self.device)))

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        from umm.ports.bagel.tiny import write_tiny

        write_tiny(Path(directory))


def _turns(messages: list[Message]) -> list[Message]:
    if not messages or messages[-1].role != "user":
        raise InputError("The conversation must end with a user message.")
    return messages
