"""JanusFlow 1.3B: SigLIP understanding and rectified-flow text-to-image in one DeepSeek LLM.

The hub repo ``deepseek-ai/JanusFlow-1.3B`` is read as published (``config.json`` of type
``multi_modality``, one ``model.safetensors`` in the official names, DeepSeek tokenizer files and
``preprocessor_config.json``); images are decoded by ``stabilityai/sdxl-vae``, the catalog component
``vae`` (diffusers ``AutoencoderKL``; bf16 or fp32, never fp16 -- upstream: "this vae doesn't work
with fp16"). The model is the port in :mod:`umm.ports.janusflow` on native classes.

* Chat: upstream's "deepseek" format with its system prompt, ``<begin_of_image>`` replaced by
  ``beg_of_und_embed`` and 576 SigLIP tokens per image, streamed through ``LlamaForCausalLM.generate``
  (seeded via :mod:`umm.sampling`).
* Text to image: N images in one batch (2N rows with guidance), Euler steps of the rectified flow
  from noise drawn with an explicit generator, the prompt's KV cache reused across steps, progress
  and cancel per step, then ``vae.decode(z / scaling_factor)``; optionally upscaled to 1024 px with
  LANCZOS as the upstream demo shows its images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import InputError
from umm.sampling import stream_generate
from umm.types import GenerateRequest, ImageResult, Message, UnderstandRequest

# Files of the model repo that loading reads (the tokenizer may ship without tokenizer_config.json).
REPO_FILES = [
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "preprocessor_config.json", "processor_config.json",
]
LATENT_SIZE = 48  # upstream demo: z is (5, 4, 48, 48) -> 384 px through the SDXL VAE (8x)
UPSCALE_SIZE = 1024  # upstream demo: Image.resize((1024, 1024), Image.LANCZOS)


class JanusFlowAdapter(Adapter):
    family = "janusflow"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.model = None
        self.vae = None
        self.tokenizer = None
        self.image_processor = None
        self.token_ids: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderKL
        from transformers import PreTrainedTokenizerFast

        from umm.adapters.janus_v1 import ensure_bos
        from umm.ports.janusflow import load_model
        from umm.ports.janusflow.processing import SPECIAL_TOKENS, special_ids

        device = torch.device(device)
        with load_errors(self.spec):
            root = self.snapshot_dir(allow_patterns=REPO_FILES)
            tokenizer = PreTrainedTokenizerFast.from_pretrained(
                root, extra_special_tokens={f"{k}_token": v for k, v in SPECIAL_TOKENS.items()}
            )
            ensure_bos(tokenizer)
            self.token_ids = special_ids(tokenizer)
            self.model = load_model(root, dtype, device)
            vocab = self.model.language_model.config.vocab_size
            if max(self.token_ids.values()) >= vocab:
                raise ValueError(f"the tokenizer's image tokens {self.token_ids} lie outside the model's {vocab} "
                                 "embeddings")
            self.image_processor = image_processor(root, self.model.config.vision["image_size"])
            self.tokenizer = tokenizer
        vae_dtype = torch.float32 if dtype == torch.float16 else dtype
        with load_errors(self.spec.part("vae")):
            self.vae = AutoencoderKL.from_pretrained(
                self.repo("vae"), dtype=vae_dtype, use_safetensors=True, **self.source_kwargs("vae")
            ).to(device).eval()
        self.device, self.dtype = device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.model, self.vae) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer", "image_processor")

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        capability = self.spec.capability("understand")
        capability.check_images(sum(len(m.images) for m in request.messages))
        params = capability.validate(request.params)
        seed = resolve_seed(request.seed)
        with torch.inference_mode():
            inputs = self.chat_inputs(request.messages)
        tokenizer = self.tokenizer
        yield from stream_generate(
            self.model.language_model,
            inputs,
            tokenizer,
            control,
            max_new_tokens=params["max_new_tokens"],
            temperature=params["temperature"],
            top_p=params["top_p"],
            generator=self.generator(seed),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,  # as the upstream demo
        )

    def chat_inputs(self, messages: list[Message]) -> dict[str, torch.Tensor]:
        """``inputs_embeds`` (image rows written in) and ``attention_mask`` for ``generate``."""
        from umm.ports.janusflow.processing import SPECIAL_TOKENS, expand_image_tokens, format_conversation

        turns, images = [], []
        for message in messages:
            placeholders = f"{SPECIAL_TOKENS['image']}\n" * len(message.images)
            # a placeholder typed by the user would ask for an image that is not there
            turns.append((message.role, placeholders + message.text.replace(SPECIAL_TOKENS["image"], "")))
            images.extend(image.convert("RGB") for image in message.images)
        ids = torch.tensor(self.tokenizer(format_conversation(turns))["input_ids"])
        ids, image_mask = expand_image_tokens(ids, self.token_ids, self.model.config.num_image_tokens)
        pixels = None
        if images:
            pixels = self.image_processor(images, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        ids = ids[None].to(self.device)
        embeds = self.model.prepare_inputs_embeds(ids, pixels, image_mask[None].to(self.device))
        return {"inputs_embeds": embeds, "attention_mask": torch.ones_like(ids)}

    # -- generation ------------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        from umm.ports.janusflow import sample
        from umm.ports.janusflow.processing import generation_prompt

        params = self.spec.capability("generate").validate(request.params)
        if not request.prompt.strip():
            raise InputError("Write a prompt to generate an image.")
        seed = resolve_seed(request.seed)
        started = time.perf_counter()
        ids = torch.tensor(self.tokenizer(generation_prompt(request.prompt))["input_ids"], device=self.device)
        generator = self.generator(seed)
        channels = self.model.config.gen_enc.get("input_channels", self.vae.config.latent_channels)
        noise = torch.randn(
            (params["num_images"], channels, LATENT_SIZE, LATENT_SIZE),
            generator=generator, device=generator.device, dtype=self.dtype,
        ).to(self.device)
        latents = sample(
            self.model, ids, noise,
            steps=params["steps"], cfg_weight=params["guidance_scale"], pad_id=self.pad_id,
            on_step=lambda done, total: control.step(done, total, "steps"),
        )
        sampled = time.perf_counter()
        images = self.decode(latents, control, upscale=params["upscale"])
        info = self.run_info("generate", seed, params, prompt=request.prompt)
        info.timings = {"sample_s": sampled - started, "decode_s": time.perf_counter() - sampled}
        return ImageResult(images=images, info=info)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, control: RunControl, *, upscale: bool) -> list:
        """``vae.decode(z / scaling_factor)`` one image at a time, clipped to uint8 RGB."""
        from PIL import Image

        out = []
        for latent in latents:
            control.check()
            z = latent[None].to(self.vae.dtype) / self.vae.config.scaling_factor
            pixels = self.vae.decode(z).sample.float().clamp(-1.0, 1.0)
            array = ((pixels[0].permute(1, 2, 0) + 1) / 2 * 255).to(torch.uint8).cpu().numpy()
            image = Image.fromarray(array, mode="RGB")
            if upscale:
                image = image.resize((UPSCALE_SIZE, UPSCALE_SIZE), Image.LANCZOS)
            out.append(image)
        return out

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        """The official layout at a few hundred KB: model repo at ``directory``, the VAE repo in ``vae/``."""
        write_tiny(Path(directory), **TINY_SIZES)


# Tiny twin sizes (the real ones: LLM 2048 wide, SigLIP-L/16 at 384 px, UViT width 768).
TINY_SIZES: dict[str, Any] = {
    "llm": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 4, "max_position_embeddings": 1024},
    "siglip": {"width": 16, "layers": 1, "heads": 2, "patch_size": 4, "mlp_ratio": 2.0, "image_size": 16},
    "gen_width": 16,
    "vae_channels": [8, 8],
}


def write_tiny(directory: Path, *, llm: dict, siglip: dict, gen_width: int, vae_channels: list[int]) -> None:
    """Random JanusFlow + SDXL-style VAE repos in the hub layouts, the model in the official names."""
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from umm.ports.janusflow import JanusFlowConfig, JanusFlowModel, port_to_original
    from umm.ports.janusflow.processing import EOS, SPECIAL_TOKENS
    from umm.tiny import train_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    specials = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": EOS, "pad_token": "<｜▁pad▁｜>"}
    tokenizer = train_tokenizer([*specials.values(), *SPECIAL_TOKENS.values()], **specials)
    tokenizer.save_pretrained(directory)  # BOS comes from add_bos_token, as in the hub's tokenizer_config
    config_json = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    config_json.update(tokenizer_class="LlamaTokenizerFast", add_bos_token=True, add_eos_token=False)
    (directory / "tokenizer_config.json").write_text(json.dumps(config_json, indent=2), encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(
        json.dumps({**specials, "additional_special_tokens": list(SPECIAL_TOKENS.values())}, indent=2),
        encoding="utf-8",
    )
    hidden = llm["hidden_size"]
    uvit = {"dropout": 0.0, "elementwise_affine": True, "hidden_size": hidden, "layers_in_middle": 2,
            "norm_eps": 1e-6, "use_bias": True, "use_mid_block": True, "block_out_channels": [gen_width]}
    original = {
        "architectures": ["MultiModalityCausalLM"],
        "model_type": "multi_modality",
        "torch_dtype": "float32",
        "language_config": {"model_type": "llama", "vocab_size": len(tokenizer), "torch_dtype": "float32",
                            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                            "pad_token_id": tokenizer.pad_token_id, **llm},
        "vision_und_enc_config": {
            "cls": "CLIPVisionTower", "model_type": "vision_und_enc",
            # a name the SigLIP table lacks, with its sizes spelled out (the loader reads both)
            "params": {"model_name": "siglip_tiny", "select_feature": "same", "select_layer": -1, **siglip},
        },
        "vision_gen_enc_config": {
            "cls": "ShallowUViTEncoder", "model_type": "vision_gen_enc",
            "params": {**uvit, "input_channels": 4, "kernel_size": 2, "stride": 2, "padding": None},
        },
        "vision_gen_dec_config": {
            "cls": "ShallowUViTDecoder", "model_type": "vision_gen_dec",
            "params": {**uvit, "in_channels": gen_width, "out_channels": 4, "upsamples": 1},
        },
    }
    (directory / "config.json").write_text(json.dumps(original, indent=2), encoding="utf-8")
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "VLMImageProcessor", "image_size": siglip["image_size"], "min_size": 14,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255,
        "do_normalize": True, "background_color": [127, 127, 127],
    }, indent=2), encoding="utf-8")
    torch.manual_seed(0)
    model = JanusFlowModel(JanusFlowConfig.from_original(original)).eval()
    with torch.no_grad():  # upstream inits GRN to zero and beg_of_und_embed to zeros; make them matter
        for name, param in model.named_parameters():
            if "channelwise_norm" in name or name == "beg_of_und_embed":
                param.normal_(0, 0.5)
    state = port_to_original(model.state_dict())
    width = siglip["width"]  # the unused pooling head the official checkpoint carries (dropped on load)
    state["vision_und_enc_model.vision_tower.attn_pool.latent"] = torch.randn(1, 1, width)
    state["vision_und_enc_model.vision_tower.attn_pool.q.weight"] = torch.randn(width, width)
    save_file({k: v.contiguous() for k, v in state.items()}, directory / "model.safetensors", metadata={"format": "pt"})
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=vae_channels,
        down_block_types=["DownEncoderBlock2D"] * len(vae_channels),
        up_block_types=["UpDecoderBlock2D"] * len(vae_channels),
        layers_per_block=1, norm_num_groups=4, sample_size=LATENT_SIZE * 2 ** (len(vae_channels) - 1),
        scaling_factor=0.13025, force_upcast=False,
    )
    vae.save_pretrained(directory / "vae")


def image_processor(root: Path, image_size: int):
    """Upstream's ``VLMImageProcessor`` is transformers' Janus image processor, set up as for Janus 1.3B."""
    from transformers import JanusImageProcessorPil

    from umm.adapters.janus_v1 import image_processor_kwargs

    return JanusImageProcessorPil(**image_processor_kwargs(root, image_size))
