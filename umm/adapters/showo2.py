"""Show-o2 (showlab): understanding and flow-matching text-to-image on a Qwen2.5 LLM over Wan2.1-VAE latents.

The model is the port in :mod:`umm.ports.showo2` (official parameter names, loaded strictly). It reads
four repos, each at its own pin (catalog ``components``):

* the Show-o2 repo: ``config.json`` and ``pytorch_model.bin``, a pickle that ``python -m umm convert <id>``
  turns into ``pytorch_model.safetensors`` once; only that file is ever loaded;
* ``llm``: the Qwen2.5-Instruct repo the checkpoint names (``llm_model_path``), for its config and
  tokenizer only (Show-o2 then adds ``[PAD]``, ``<image>``, ``<|vid_start|>``, ``<|vid_end|>``);
* ``siglip``: SigLIP so400m's config (sizes of the semantic layers and of the position table);
* ``vae``: a Wan2.1 diffusers repo, whose ``vae/`` is diffusers' native ``AutoencoderKLWan``; latents are
  normalised with its ``latents_mean`` / ``latents_std`` (upstream's 16-channel constants).

Understanding follows ``inference_mmu.py``: the image is resized (short side, bicubic) and centre-cropped
to the size the position table was trained for (√rows · patch · 8 = 432 px), its VAE posterior is
*sampled* (the seed's generator), and the answer is decoded with a KV cache (upstream recomputes the
whole sequence per token; the tokens are the same). Generation follows ``inference_t2i.py`` (see
:func:`umm.ports.showo2.sample`); the closing tokens and pads after the image block are dropped, which
changes no velocity under the causal mask.
"""

from __future__ import annotations

import json
import logging
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

log = logging.getLogger(__name__)

WEIGHTS = "pytorch_model.bin"
HEAD_CONFIG = "diffusion_head_config.json"  # only tiny twins ship one; upstream hard-codes the head's size
VAE_FACTOR = 8
TIME_SHIFT = 3.0  # transport.time_shifting_factor in every demo yaml


class Showo2Adapter(Adapter):
    family = "showo2"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.model = None
        self.vae = None
        self.tokenizer = None
        self.ids = None

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderKLWan
        from transformers import AutoTokenizer, Qwen2Config, SiglipVisionConfig

        from umm.ports.showo2 import HeadConfig, TokenIds, load_model, showo_tokenizer

        device = torch.device(device)
        with load_errors(self.spec):
            folder = self.snapshot_dir(None, ["*.json", "*.safetensors"])
            weights = self.converted(WEIGHTS)
            head_file = folder / HEAD_CONFIG
            head = HeadConfig.from_dict(json.loads(head_file.read_text())) if head_file.is_file() else HeadConfig()
            llm_config = Qwen2Config.from_pretrained(self.repo("llm"), **self.source_kwargs("llm"))
            vision = SiglipVisionConfig.from_pretrained(self.repo("siglip"), **self.source_kwargs("siglip"))
            tokenizer = AutoTokenizer.from_pretrained(self.repo("llm"), **self.source_kwargs("llm"))
            self.tokenizer = showo_tokenizer(tokenizer)
            self.model = load_model(folder, weights, llm_config, vision, head, dtype=dtype, device=device)
            self.vae = AutoencoderKLWan.from_pretrained(
                self.repo("vae"), subfolder="vae", dtype=dtype, use_safetensors=True, **self.source_kwargs("vae")
            ).to(device).eval()
        vocab = self.model.config["llm_vocab_size"]
        if len(self.tokenizer) != vocab:
            log.warning("%s: tokenizer has %d tokens, the checkpoint %d", self.spec.id, len(self.tokenizer), vocab)
        self.ids = TokenIds.of(self.tokenizer)
        self.device, self.dtype = device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.model, self.vae) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer",)

    # -- the VAE ----------------------------------------------------------------------------
    def _latent_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean, device=self.device).view(shape)
        std = torch.tensor(self.vae.config.latents_std, device=self.device).view(shape)
        return mean, std

    def encode_image(self, image, size: int, generator: torch.Generator) -> torch.Tensor:
        """(1, 16, size/8, size/8) normalised latents: a posterior *sample*, noise added after normalising."""
        pixels = center_crop(image.convert("RGB"), size).to(self.device, self.vae.dtype)[:, :, None]
        posterior = self.vae.encode(pixels).latent_dist
        mean, std = self._latent_stats()
        noise = torch.randn(posterior.mean.shape, generator=generator, device=generator.device)
        z = (posterior.mean.float() - mean) / std + posterior.std.float() * noise.to(self.device)
        return z[:, :, 0]

    def decode_image(self, latents: torch.Tensor):
        from PIL import Image

        mean, std = self._latent_stats()
        z = latents[:, :, None].float() * std + mean
        x = self.vae.decode(z.to(self.vae.dtype)).sample[:, :, 0].float().clamp(-1, 1)
        pixels = ((x[0] + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8)  # truncates, as upstream
        return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())

    @property
    def understanding_size(self) -> int:
        """The input size the SigLIP table was trained at: √rows tokens · patch · VAE factor (432 px)."""
        side = math.isqrt(self.model.position_embedding.weight.shape[0])
        return side * self.model.patch_size * VAE_FACTOR

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        from umm.ports.showo2 import decode, understanding_embeds, understanding_sequence
        from umm.sampling import detokenize, sample_tokens

        capability = self.spec.capability("understand")
        params = capability.validate(request.params)
        images = [image for message in request.messages for image in message.images]
        capability.check_images(len(images))
        image_turn = next((i for i, m in enumerate(request.messages) if m.images), 0)
        if images and request.messages[image_turn].role != "user":
            raise InputError("Show-o2 takes its image in a user message.")
        seed = resolve_seed(request.seed)
        generator = self.generator(seed)
        turns = [(m.role, m.text) for m in request.messages]
        size = self.understanding_size
        tokens = (size // VAE_FACTOR // self.model.patch_size) ** 2 if images else None
        with torch.inference_mode():
            latents = self.encode_image(images[0], size, generator) if images else None
            seq, block = understanding_sequence(self.tokenizer, self.ids, turns, tokens, image_turn)
            embeds = understanding_embeds(self.model, seq, block, latents)

        def pick(logits: torch.Tensor) -> torch.Tensor:
            return sample_tokens(logits[None], temperature=params["temperature"], top_p=params["top_p"],
                                 generator=generator)[0]

        stream = decode(self.model, embeds, block, max_new_tokens=params["max_new_tokens"], eos=self.ids.eos,
                        pick=pick)

        def tokens() -> Iterator[int]:
            while True:
                with torch.inference_mode():  # per token, so the consumer never runs in inference mode
                    token = next(stream, None)
                if token is None:
                    return
                yield token

        yield from detokenize(tokens(), self.tokenizer, control, params["max_new_tokens"])
        control.check()

    # -- text-to-image -----------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        from umm.ports.showo2 import generation_batch, sample

        params = self.spec.capability("generate").validate(request.params)
        seed = resolve_seed(request.seed)
        height, width, count = params["height"], params["width"], params["num_images"]
        align = VAE_FACTOR * self.model.patch_size
        if height % align or width % align:
            raise InputError(f"Width and height must be multiples of {align}; got {width}x{height}.")
        grid = (height // align) * (width // align)
        scale = params["guidance_scale"]
        timings: dict[str, float] = {}
        started = time.perf_counter()
        with torch.inference_mode():
            batch = generation_batch(
                self.tokenizer, self.ids, [request.prompt] * count, grid, int(self.spec.options.get(
                    "max_text_len", 290)), scale > 0, self.dtype, self.device,
            )
            generator = self.generator(seed)
            shape = (count, self.model.latent_dim, height // VAE_FACTOR, width // VAE_FACTOR)
            noise = torch.randn(shape, generator=generator, device=generator.device).to(self.device)
            latents = sample(
                self.model, batch, noise, steps=params["steps"], guidance_scale=scale, shift=TIME_SHIFT,
                on_step=lambda done, total: control.step(done, total, "steps"),
            )
            timings["sample_s"] = time.perf_counter() - started
            mark = time.perf_counter()
            images = []
            for latent in latents:
                control.check()
                images.append(self.decode_image(latent[None]))
            timings["decode_s"] = time.perf_counter() - mark
        info = self.run_info("generate", seed, params, prompt=request.prompt)
        info.timings = timings
        return ImageResult(images=images, info=info)

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        """The hub layout: the model repo (``config.json`` + the pickled ``pytorch_model.bin``, converted
        with ``umm.convert.convert_file`` as ``python -m umm convert`` does), ``llm/`` (Qwen2.5-style
        config + tokenizer), ``siglip/`` (config) and ``vae/vae/`` (a Wan diffusers repo's VAE folder).
        ``diffusion_head_config.json`` shrinks the flow head (real repos have none: upstream's size).
        """
        build_tiny_twin(Path(directory))


def center_crop(image, size: int) -> torch.Tensor:
    """(1, 3, size, size) in [-1, 1]: short side to ``size`` (bicubic), centre crop (torchvision's rounding)."""
    import numpy as np
    from PIL import Image

    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    image = image.resize(new, Image.BICUBIC)
    left = round((new[0] - size) / 2.0)
    top = round((new[1] - size) / 2.0)
    image = image.crop((left, top, left + size, top + size))
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((array - 0.5) / 0.5)[None]


# -- the tiny twin (kept in this file: the twin cache is keyed on the adapter's source) ----------
QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
]
TINY_HEAD = {"hidden_size": 48, "head_dim": 12, "intermediate_size": 96, "num_attention_heads": 4,
             "num_key_value_heads": 2}


def build_tiny_twin(directory: Path) -> None:
    """The official layout with a few-MB model; see :meth:`Showo2Adapter.build_tiny`."""
    from diffusers import AutoencoderKLWan
    from transformers import Qwen2Config, SiglipConfig

    from umm.convert import convert_file
    from umm.ports.showo2.model import HeadConfig, Showo2Model
    from umm.ports.showo2.pipeline import showo_tokenizer
    from umm.tiny import train_tokenizer

    directory = Path(directory)
    tokenizer = train_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(directory / "llm")
    vocab = len(showo_tokenizer(tokenizer))  # Show-o2 adds [PAD], <image>, <|vid_start|>, <|vid_end|>
    llm = Qwen2Config(
        vocab_size=vocab + 60, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    llm.save_pretrained(directory / "llm")
    siglip = SiglipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                       "image_size": 56, "patch_size": 14},
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 32, "max_position_embeddings": 16,
                     "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0},
    )
    siglip.save_pretrained(directory / "siglip")
    config = {
        "_class_name": "Showo2Qwen2_5", "llm_vocab_size": vocab, "llm_model_path": "Qwen/Qwen2.5-1.5B-Instruct",
        "load_from_showo": True, "image_latent_dim": 16, "image_latent_height": 4, "image_latent_width": 4,
        "video_latent_height": 4, "video_latent_width": 4, "patch_size": 2, "hidden_size": 64,
        "clip_latent_dim": 32, "num_diffusion_layers": 2, "add_time_embeds": True, "add_qk_norm": True,
        "clip_pretrained_model_path": "google/siglip-so400m-patch14-384",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "diffusion_head_config.json").write_text(json.dumps(TINY_HEAD, indent=2))
    torch.manual_seed(0)
    model = Showo2Model(config, llm, siglip.vision_config, HeadConfig.from_dict(TINY_HEAD))
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, directory / "pytorch_model.bin")  # the official file is a pickle
    convert_file(directory / "pytorch_model.bin")
    AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).save_pretrained(directory / "vae" / "vae")
