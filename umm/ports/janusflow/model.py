"""JanusFlow (``MultiModalityCausalLM`` of deepseek-ai/Janus ``janus/janusflow``) on native classes.

* the LLM is transformers' ``LlamaForCausalLM`` (``language_model.*``, names unchanged);
* the understanding tower is transformers' ``JanusVisionModel``, loaded through the same SigLIP
  renaming as Janus 1.3B (:func:`umm.adapters.janus_v1.siglip_tower_to_hf`);
* the generation encoder / decoder are :mod:`umm.ports.janusflow.uvit`; the three aligners,
  ``beg_of_und_embed`` and the decoder-aligner RMSNorm are plain modules under their official names.

Every width comes from the checkpoint's ``config.json`` (``multi_modality``): the LLM width from
``language_config``, the generation width from the UViT configs, the SigLIP width from the tower's
name table (upstream hard-codes 1024 / 2048 / 768 in ``__init__``; those are the real model's values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umm.ports.janusflow.uvit import ShallowUViTDecoder, ShallowUViTEncoder

TOWER_PREFIX = "vision_und_enc_model.vision_tower."  # the timm SigLIP tower in the official checkpoint
VISION_PREFIX = "vision_und_enc_model."  # where the port keeps JanusVisionModel


@dataclass
class JanusFlowConfig:
    """The parts of the official ``config.json`` the model is built from."""

    language: dict[str, Any]
    vision: dict[str, Any]  # SigLIP sizes: width, layers, heads, patch_size, mlp_ratio, image_size
    gen_enc: dict[str, Any]
    gen_dec: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_original(cls, original: dict[str, Any], siglip_models: dict[str, dict] | None = None) -> JanusFlowConfig:
        from umm.adapters.janus_v1 import siglip_sizes

        params = dict(original["vision_und_enc_config"].get("params", {}))
        vision = siglip_sizes(params, siglip_models)
        vision["image_size"] = int(params.get("image_size", 384))
        for part in ("vision_gen_enc_config", "vision_gen_dec_config"):
            wanted = "ShallowUViTEncoder" if "enc" in part else "ShallowUViTDecoder"
            if wanted not in original[part].get("cls", ""):
                raise ValueError(f"{part}.cls is {original[part].get('cls')!r}; JanusFlow uses {wanted}")
        return cls(
            language=dict(original["language_config"]),
            vision=vision,
            gen_enc=dict(original["vision_gen_enc_config"]["params"]),
            gen_dec=dict(original["vision_gen_dec_config"]["params"]),
            raw=original,
        )

    @classmethod
    def from_file(cls, path: Path, siglip_models: dict[str, dict] | None = None) -> JanusFlowConfig:
        return cls.from_original(json.loads(Path(path).read_text(encoding="utf-8")), siglip_models)

    def llama_config(self):
        from transformers import LlamaConfig

        keys = {k: v for k, v in self.language.items() if not k.startswith("_") and k != "torch_dtype"}
        return LlamaConfig(**keys)

    def vision_config(self):
        from transformers import JanusVisionConfig

        v = self.vision
        return JanusVisionConfig(
            hidden_size=v["width"],
            num_hidden_layers=v["layers"],
            num_attention_heads=v["heads"],
            image_size=v["image_size"],
            patch_size=v["patch_size"],
            mlp_ratio=v["mlp_ratio"],
            layer_norm_eps=1e-6,
            attention_bias=True,
            hidden_act="gelu",
        )

    @property
    def num_image_tokens(self) -> int:
        """Understanding tokens per image (576 for SigLIP-L/16 at 384 px)."""
        return (self.vision["image_size"] // self.vision["patch_size"]) ** 2


class JanusFlowModel(nn.Module):
    def __init__(self, config: JanusFlowConfig) -> None:
        from transformers import JanusVisionModel, LlamaForCausalLM
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        super().__init__()
        self.config = config
        llama = config.llama_config()
        hidden, siglip = llama.hidden_size, config.vision["width"]
        gen_in = config.gen_enc["block_out_channels"][-1]
        gen_out = config.gen_dec.get("in_channels", gen_in)
        self.vision_und_enc_model = JanusVisionModel(config.vision_config())
        self.vision_und_enc_aligner = nn.Linear(siglip, hidden)
        self.beg_of_und_embed = nn.Parameter(torch.zeros(1, hidden))
        self.vision_gen_enc_model = ShallowUViTEncoder(**config.gen_enc)
        self.vision_gen_enc_aligner = nn.Linear(gen_in, hidden)
        self.vision_gen_dec_model = ShallowUViTDecoder(**config.gen_dec)
        self.language_model = LlamaForCausalLM(llama)
        self.vision_gen_dec_aligner_norm = LlamaRMSNorm(hidden, eps=llama.rms_norm_eps)
        self.vision_gen_dec_aligner = nn.Linear(hidden, gen_out)

    # -- understanding ---------------------------------------------------------------------
    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) -> (n, 1 + T, D): ``beg_of_und_embed`` then the aligned SigLIP tokens."""
        features = self.vision_und_enc_model(pixel_values.to(self.beg_of_und_embed.dtype)).last_hidden_state
        aligned = self.vision_und_enc_aligner(features)
        begin = self.beg_of_und_embed.to(aligned.dtype).view(1, 1, -1).expand(aligned.shape[0], 1, -1)
        return torch.cat([begin, aligned], dim=1)

    def prepare_inputs_embeds(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None, images_seq_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Token embeddings with BOI + placeholders replaced, in order, by each image's rows."""
        embeds = self.language_model.get_input_embeddings()(input_ids.clamp(min=0))
        if pixel_values is None or images_seq_mask is None or not bool(images_seq_mask.any()):
            return embeds
        rows = self.image_embeds(pixel_values.flatten(0, 1) if pixel_values.dim() == 5 else pixel_values)
        rows = rows.reshape(-1, rows.shape[-1])
        count = int(images_seq_mask.sum())
        if count != rows.shape[0]:
            raise ValueError(f"{count} image positions in the prompt but {rows.shape[0]} image rows")
        embeds = embeds.clone()
        embeds[images_seq_mask] = rows.to(embeds.dtype)
        return embeds

    # -- generation ------------------------------------------------------------------------
    def encode_latents(self, z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Latents -> (LLM-width z tokens (B, N, D) row-major over the grid, t_emb (B, D), skips)."""
        x_emb, t_emb, hs = self.vision_gen_enc_model(z, t)
        tokens = self.vision_gen_enc_aligner(x_emb.flatten(2).transpose(1, 2))
        return tokens, t_emb, hs

    def decode_hidden(
        self, hidden: torch.Tensor, grid: tuple[int, int], hs: list[torch.Tensor], t_emb: torch.Tensor
    ) -> torch.Tensor:
        """LLM image rows (B, N, D) -> velocity, through the second RMSNorm, the aligner and the decoder."""
        x = self.vision_gen_dec_aligner(self.vision_gen_dec_aligner_norm(hidden))
        x = x.reshape(x.shape[0], *grid, x.shape[-1]).permute(0, 3, 1, 2)
        return self.vision_gen_dec_model(x, hs, t_emb)


def original_to_port(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official state dict in the port's names: only the SigLIP tower is renamed (Janus 1.3B's mapping)."""
    from umm.adapters.janus_v1 import siglip_tower_to_hf

    out = {k: v for k, v in state.items() if not k.startswith(TOWER_PREFIX)}
    out.update({VISION_PREFIX + k: v for k, v in siglip_tower_to_hf(state, TOWER_PREFIX).items()})
    return out


def port_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`original_to_port` (writes tiny checkpoints in the official naming)."""
    from umm.adapters.janus_v1 import hf_to_siglip_tower

    vision = {k[len(VISION_PREFIX):]: v for k, v in state.items() if k.startswith(VISION_PREFIX)}
    out = {k: v for k, v in state.items() if not k.startswith(VISION_PREFIX)}
    out.update(hf_to_siglip_tower(vision, TOWER_PREFIX))
    return out


def load_model(
    root: Path,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    siglip_models: dict[str, dict] | None = None,
) -> JanusFlowModel:
    """Build from ``root/config.json`` without allocating, then assign ``root/model.safetensors`` strictly."""
    from accelerate import init_empty_weights
    from safetensors.torch import load_file

    root = Path(root)
    weights = root / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no safetensors weights found in {root} (expected model.safetensors)")
    config = JanusFlowConfig.from_file(root / "config.json", siglip_models)
    with init_empty_weights(include_buffers=False):  # parameters on "meta"; buffers (rope, position ids) real
        model = JanusFlowModel(config)
    state = {k: v.to(dtype) for k, v in original_to_port(load_file(weights)).items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
