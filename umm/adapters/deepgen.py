"""DeepGen 1.0: Qwen2.5-VL hidden states, stacked over layers, condition an SD3.5-Medium MMDiT.

The hub repo is laid out diffusers-style and every part loads from its subfolder with native classes:

* ``vlm/`` — transformers' ``Qwen2_5_VLForConditionalGeneration`` with DeepGen's trained LoRA merged
  in. Stock Qwen2.5-VL-3B would silently lack that LoRA, so when ``vlm/`` is missing the load stops
  with a clear error, unless the catalog entry names the stock weights as its ``vlm`` component.
* ``tokenizer/`` — the Qwen2.5 tokenizer; the image placeholders are expanded here
  (:func:`umm.adapters.omnigen2.expand_image_tokens`): ``Qwen2_5_VLProcessor`` needs torchvision.
* ``connector/`` — :class:`umm.ports.deepgen.DeepGenConnector` (transformers' ``SiglipEncoder`` plus
  three projectors and the meta-queries).
* ``transformer/`` — diffusers' ``SD3Transformer2DModel``, run through
  :func:`umm.ports.deepgen.predict` so edits can append reference latents.
* ``vae/`` — diffusers' ``AutoencoderKL``; ``scheduler/`` — ``FlowMatchEulerDiscreteScheduler``.
* ``prompt_template.json`` — the chat wrapper (upstream's config values when the file is absent).

DeepGen does not expose understanding, so none is declared although the VLM could chat. Initial
noise and the reference latent's posterior noise come from the request's generator (the posterior's
first, so the first of N images does not depend on N).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import ClassVar

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import ModelLoadError
from umm.types import EditRequest, GenerateRequest, ImageResult

log = logging.getLogger(__name__)

# Upstream's eval scripts for editing (scripts/evaluation/gedit.py, img_edit.py --cfg_prompt); the
# text-to-image scripts use "" (gen_eval.py, wise.py). Used when an edit request leaves it empty.
EDIT_NEGATIVE_PROMPT = (
    "blurry, low quality, low resolution, distorted, deformed, broken content, missing parts, damaged details, "
    "artifacts, glitch, noise, pixelated, grainy, compression artifacts, bad composition, wrong proportion, "
    "incomplete editing, unfinished, unedited areas."
)


class DeepGenAdapter(Adapter):
    family = "deepgen"
    checkpoint_modules: ClassVar[dict[str, str]] = {
        "vlm": "transformers:Qwen2_5_VLForConditionalGeneration",
        "connector": "",
        "transformer": "diffusers:SD3Transformer2DModel",
        "vae": "diffusers:AutoencoderKL",
    }
    checkpoint_files = ("model_index.json", "prompt_template.json", "scheduler/scheduler_config.json",
                        "tokenizer/tokenizer_config.json")
    special_tokens: ClassVar[dict[str, tuple[str, ...]]] = {
        "tokenizer": ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"),
    }

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.vlm = None
        self.connector = None
        self.transformer = None
        self.vae = None
        self.tokenizer = None
        self.template = None
        self.scheduler_config: dict = {}
        self._hooks: list | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        from umm.ports.deepgen import PromptTemplate, load_connector

        device = torch.device(device)
        offload = bool(self.spec.options.get("cpu_offload", False)) and device.type != "cpu"
        repo, source = self.repo(), self.source_kwargs()
        with load_errors(self.spec):
            self.tokenizer = AutoTokenizer.from_pretrained(repo, subfolder="tokenizer", **source)
            self.template = PromptTemplate.from_file(self._file("prompt_template.json", required=False))
            self.scheduler_config = dict(
                FlowMatchEulerDiscreteScheduler.load_config(repo, subfolder="scheduler", **source)
            )
            vlm, subfolder = self._vlm_source()
            self.vlm = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                self.repo(vlm), subfolder=subfolder, dtype=dtype, attn_implementation="sdpa", device_map="cpu",
                use_safetensors=True, **self.source_kwargs(vlm),
            ).eval()
            self.connector = load_connector(
                self._file("connector/config.json"), self._file("connector/model.safetensors"), dtype
            )
            self.transformer = SD3Transformer2DModel.from_pretrained(
                repo, subfolder="transformer", dtype=dtype, **self.pretrained_kwargs()
            ).eval()
            self.vae = AutoencoderKL.from_pretrained(
                repo, subfolder="vae", dtype=dtype, **self.pretrained_kwargs()
            ).eval()
        self.device, self.dtype = device, dtype
        if offload:
            self._enable_offload(device)
        else:
            for module in self.modules():
                module.to(device)

    def _file(self, name: str, required: bool = True) -> Path | None:
        """A file of the main repo at its pin (a local folder or the hub cache)."""
        from transformers.utils import cached_file

        folder, _, filename = name.rpartition("/")
        path = cached_file(
            self.repo(), filename, subfolder=folder, _raise_exceptions_for_missing_entries=False, **self.source_kwargs()
        )
        if path is None and required:
            raise OSError(f"{self.repo()} does not appear to have a file named {name}")
        return Path(path) if path else None

    def _vlm_source(self) -> tuple[str | None, str]:
        """(component, subfolder): the repo's ``vlm/`` (DeepGen's merged LoRA), stock weights only on opt-in."""
        if self._file("vlm/config.json", required=False) is not None:
            if "vlm" in self.spec.components:
                log.warning("%s: using the repo's vlm/; the catalog's vlm component is not needed", self.spec.id)
            return None, "vlm"
        if "vlm" in self.spec.components:
            log.warning(
                "%s: no vlm/ in %s; using %s as the catalog says (without DeepGen's trained VLM LoRA)",
                self.spec.id, self.repo(), self.repo("vlm"),
            )
            return "vlm", ""
        raise ModelLoadError(
            f"{self.spec.name}: {self.repo()} (revision {self.spec.revision or 'local'}) has no vlm/ folder. "
            "DeepGen's VLM is Qwen2.5-VL-3B with trained LoRA weights merged in; stock Qwen2.5-VL would "
            "silently lack them, so umm does not substitute it. Use a revision that ships vlm/, or add a "
            "'vlm' component (e.g. Qwen/Qwen2.5-VL-3B-Instruct at a pinned revision) to the catalog entry "
            "to accept stock weights."
        )

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.vlm, self.connector, self.transformer, self.vae) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer", "_hooks")

    def to(self, device: torch.device) -> None:
        device = torch.device(device)
        if not self._hooks:
            super().to(device)
            return
        for hook in self._hooks:  # offloaded: weights stay in RAM, each goes to `device` when used
            hook.offload()
            hook.hook.execution_device = device
        self.device = device

    # -- model CPU offload (catalog option cpu_offload) --------------------------------------
    def _enable_offload(self, device: torch.device) -> None:
        """Keep the four models in RAM; ``_use`` moves one at a time to ``device`` (accelerate hooks)."""
        from accelerate import cpu_offload_with_hook

        hook = None
        self._hooks = []
        for module in self.modules():
            _, hook = cpu_offload_with_hook(module, execution_device=device, prev_module_hook=hook)
            self._hooks.append(hook)

    def _use(self, *modules: torch.nn.Module) -> None:
        if not self._hooks:
            return
        for hook in self._hooks:
            if all(hook.model is not module for module in modules):
                hook.offload()
        for module in modules:
            module.to(self.device)

    def _offload_all(self) -> None:
        for hook in self._hooks or []:
            hook.offload()

    # -- generation and editing --------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        params = self.spec.capability("generate").validate(request.params)
        return self._run("generate", request.prompt, request.negative_prompt, None, params, request.seed, control)

    def edit(self, request: EditRequest, control: RunControl) -> ImageResult:
        capability = self.spec.capability("edit")
        capability.check_images(len(request.images))
        params = capability.validate(request.params)
        negative = request.negative_prompt or EDIT_NEGATIVE_PROMPT
        return self._run("edit", request.instruction, negative, request.images[0], params, request.seed, control)

    def _run(self, task, prompt, negative, image, params, seed, control) -> ImageResult:
        from umm.ports.deepgen import vae as vae_io
        from umm.ports.deepgen.sampler import sample, schedule

        seed = resolve_seed(seed)
        align = self.size_multiple(edit=image is not None)
        height = max(align, params["height"] // align * align)
        width = max(align, params["width"] // align * align)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        patch = self.transformer.config.patch_size
        timings: dict[str, float] = {}
        started = time.perf_counter()
        generator = self.generator(seed)
        shape = (params["num_images"], self.transformer.config.in_channels, height // factor, width // factor)
        try:
            with torch.inference_mode():
                refs = None
                if image is not None:
                    ref_pixels = vae_io.pixels(image, height, width)
                    guidance = self.condition([prompt, negative], ref_pixels)
                    self._use(self.vae)
                    dist = vae_io.posterior(self.vae, ref_pixels)
                    # The posterior's noise first, then the initial noise: image 0 does not depend on N.
                    eps = torch.randn(dist.mean.shape, generator=generator, device=generator.device, dtype=self.dtype)
                    refs = [vae_io.to_latents(self.vae, dist.mean, dist.std, eps.to(dist.mean.device))]
                else:
                    guidance = self.condition([prompt, negative])
                latents = torch.randn(shape, generator=generator, device=generator.device, dtype=self.dtype)
                timings["encode_s"] = time.perf_counter() - started

                mark = time.perf_counter()
                self._use(self.transformer)
                timesteps, sigmas = schedule(
                    self.scheduler_config, params["steps"], (shape[2] // patch) * (shape[3] // patch), self.device
                )
                latents = sample(
                    self.transformer,
                    latents.to(self.device),
                    guidance,
                    timesteps,
                    sigmas,
                    params["guidance_scale"],
                    refs,
                    on_step=lambda done, total, _: control.step(done, total, "steps"),
                )
                timings["sample_s"] = time.perf_counter() - mark

                mark = time.perf_counter()
                self._use(self.vae)
                images = []
                for latent in latents:  # one at a time: decoding is the memory peak
                    control.check()
                    images += vae_io.to_images(vae_io.to_uint8(vae_io.decode(self.vae, latent[None])))
                timings["decode_s"] = time.perf_counter() - mark
        finally:
            self._offload_all()
        info = self.run_info(task, seed, params, prompt=prompt, negative_prompt=negative)
        info.timings = timings
        return ImageResult(images=images, info=info)

    def size_multiple(self, edit: bool) -> int:
        """Output sides must be multiples of this: VAE factor x DiT patch (16), and for edits also what the
        ViT needs after upstream's 28/32 resize (patch 14 x merge 2 -> 32)."""
        import math

        from umm.ports.deepgen.conditioning import VIT_SCALE

        step = 2 ** (len(self.vae.config.block_out_channels) - 1) * self.transformer.config.patch_size
        if not edit:
            return step
        vision = self.vlm.config.vision_config
        return math.lcm(step, round(vision.patch_size * vision.spatial_merge_size / VIT_SCALE))

    def condition(self, prompts: list[str], ref_pixels: torch.Tensor | None = None):
        """Cond and uncond DiT conditioning of [prompt, negative] (with one reference image for edits)."""
        from umm.ports.deepgen import Guidance, encode, tokenize, vit_pixels

        self._use(self.vlm, self.connector)  # the connector reads the VLM's hidden states directly
        embeds = grid = None
        if ref_pixels is not None:
            vit, grid = vit_pixels(ref_pixels.to(self.device, self.dtype), self.vlm.config.vision_config)
            embeds = self.vlm.model.visual(vit, grid_thw=grid).pooler_output
        merge = self.vlm.config.vision_config.spatial_merge_size
        tokens = tokenize(self.tokenizer, self.template.texts(prompts, grid, merge))
        cond = encode(self.vlm, self.connector, **tokens, image_embeds=embeds, image_grid_thw=grid)
        return Guidance(cond.prompt_embeds[:1], cond.pooled[:1], cond.prompt_embeds[1:], cond.pooled[1:])

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        from umm.ports.deepgen.tiny import write_tiny

        write_tiny(Path(directory))
