"""BLIP3o-NEXT: a Qwen3 LM samples discrete image tokens, whose hidden states condition SANA-1.5.

Text-to-image only (the port in :mod:`umm.ports.blip3o`). The main repo holds everything that runs
— LM, connector, SANA transformer and DC-AE weights (plus TA-Tok's, which image *inputs* would need
and text-to-image skips) — while the SANA diffusers repo, a catalog component, supplies the configs
SANA, the DC-AE and the scheduler are built from (as upstream's ``diffusion_name_or_path``), and
their weights only where the checkpoint lacks them. Nothing is downloaded implicitly: upstream
fetches a TA-Tok file at import time; this adapter never imports upstream and never builds TA-Tok.

One run: the prompt is tokenised once and repeated for N images; the LM samples the N token rows
together (one explicit generator: one ``multinomial`` per step, then the N noise maps in bf16, the
order upstream's global RNG follows for one image); a second forward gives the conditioning; SANA
denoises all N with CFG; the DC-AE decodes one image at a time. Progress is one bar over the
sampled tokens and the denoising steps, and both loops stop at the next token or step on cancel.
"""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path
from typing import Any, ClassVar

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.types import GenerateRequest, ImageResult

SANA = "sana"  # the catalog component with SANA's transformer/, vae/ and scheduler/
SCALE = 0  # upstream inference.py: scale 0, i.e. <S0> and 27x27 = 729 TA-Tok tokens


class Blip3oAdapter(Adapter):
    family = "blip3o"
    checkpoint_modules: ClassVar[dict[str, str]] = {
        "": "",
        "@sana/transformer": "diffusers:SanaTransformer2DModel",
        "@sana/vae": "diffusers:AutoencoderDC",
    }
    checkpoint_ignored = (re.compile(r"^model\.vision_tower\."),)  # TA-Tok: not used for generation
    checkpoint_files = ("generation_config.json", "tokenizer_config.json", "@sana/scheduler/scheduler_config.json")
    special_tokens: ClassVar[dict[str, tuple[str, ...]]] = {
        "": ("<|im_start|>", "<|im_end|>", "<im_start>", "<im_end>", "<S0>", "<I0>"),
    }

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.lm: Any = None
        self.connector: Any = None
        self.sana: Any = None
        self.vae: Any = None
        self.tokenizer: Any = None
        self.scheduler_config: dict[str, Any] = {}
        self.eos_token_ids: list[int] = []
        self.pad_token_id = 0

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaTransformer2DModel
        from transformers import AutoTokenizer, GenerationConfig

        from umm.ports.blip3o import Blip3oLanguageModel, language_config, load_diffusion_head

        device = torch.device(device)
        repo, source = self.repo(), self.source_kwargs()
        sana_repo, sana_source = self.repo(SANA), self.source_kwargs(SANA)
        with load_errors(self.spec):
            config = language_config(repo, **source)  # config.json's model type is upstream's own
            self.tokenizer = AutoTokenizer.from_pretrained(repo, config=config, **source)
            generation = GenerationConfig.from_pretrained(repo, **source)
            self.lm = Blip3oLanguageModel.from_pretrained(
                repo, config=config, dtype=dtype, device_map=str(device), **self.pretrained_kwargs()
            ).eval()
            sana_config = SanaTransformer2DModel.load_config(sana_repo, subfolder="transformer", **sana_source)
            vae_config = AutoencoderDC.load_config(sana_repo, subfolder="vae", **sana_source)
            scheduler = FlowMatchEulerDiscreteScheduler.load_config(sana_repo, subfolder="scheduler", **sana_source)
            folder = self.snapshot_dir(None, ["*.json", "*.safetensors"])
            connector, sana, vae = load_diffusion_head(
                Path(folder), sana_config, vae_config, dtype=dtype, device=device
            )
            if sana is None:  # a checkpoint without its own SANA weights: the SANA repo's
                sana = SanaTransformer2DModel.from_pretrained(
                    sana_repo, subfolder="transformer", dtype=dtype, use_safetensors=True, **sana_source
                )
            if vae is None:
                vae = AutoencoderDC.from_pretrained(
                    sana_repo, subfolder="vae", dtype=dtype, use_safetensors=True, **sana_source
                )
        # The SANA repos ship a DPMSolver config; FlowMatchEuler takes only the keys it knows (as upstream).
        accepted = inspect.signature(FlowMatchEulerDiscreteScheduler.__init__).parameters
        self.scheduler_config = {k: v for k, v in scheduler.items() if k in accepted}
        eos = generation.eos_token_id if generation.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_token_ids = [int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None]
        pad = generation.pad_token_id if generation.pad_token_id is not None else self.tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.eos_token_ids[0])
        self.connector, self.sana, self.vae = connector.to(device), sana.to(device).eval(), vae.to(device).eval()
        self.device, self.dtype = device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.lm, self.connector, self.sana, self.vae) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer",)

    # -- generation ------------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        from diffusers import FlowMatchEulerDiscreteScheduler
        from PIL import Image

        from umm.ports.blip3o import conditioning, decode, denoise, prompt_text, sample_image_tokens

        params = self.spec.capability("generate").validate(request.params)
        seed = resolve_seed(request.seed)
        count, tokens, steps = params["num_images"], params["max_new_tokens"], params["steps"]
        total = tokens + steps
        timings: dict[str, float] = {}
        started = time.perf_counter()
        text = prompt_text(self.tokenizer, request.prompt, SCALE)
        ids = self.tokenizer([text], return_tensors="pt", padding_side="left")["input_ids"].to(self.device)
        generator = self.generator(seed)
        with torch.inference_mode():
            gen_ids, counts = sample_image_tokens(
                self.lm, ids.repeat(count, 1), max_new_tokens=tokens, top_k=params["top_k"], top_p=params["top_p"],
                temperature=params["temperature"], generator=generator, eos_token_ids=self.eos_token_ids,
                pad_token_id=self.pad_token_id, on_token=lambda done: control.step(done, total, "tokens"),
            )
            cond, mask = conditioning(self.lm, gen_ids, counts)
            timings["tokens_s"] = time.perf_counter() - started

            mark = time.perf_counter()
            size = self.sana.config.sample_size  # upstream's fixed 32x32 grid = SANA-1.5 1024px's sample_size
            noise = torch.randn(
                (count, self.sana.config.in_channels, size, size),
                generator=generator, device=generator.device, dtype=torch.bfloat16,  # upstream draws bf16
            ).to(self.device)
            latents = denoise(
                self.sana, self.connector, FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config),
                cond.to(self.dtype), noise, steps=steps, guidance_scale=params["guidance_scale"], mask=mask,
                on_step=lambda done: control.step(tokens + done, total, "steps"),
            )
            timings["denoise_s"] = time.perf_counter() - mark

            mark = time.perf_counter()
            images = []
            for latent in latents:  # one at a time: the DC-AE at 1024 px is the memory peak
                control.check()
                images.append(Image.fromarray(decode(self.vae, latent[None])[1][0]))
            timings["decode_s"] = time.perf_counter() - mark
        info = self.run_info("generate", seed, params, prompt=request.prompt)
        info.timings = timings
        return ImageResult(images=images, info=info)

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        from umm.ports.blip3o.tiny import build

        build(Path(directory), SANA)
