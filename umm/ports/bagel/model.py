"""Bagel's modules under the official ``ema.safetensors`` names: MoT Qwen2, SigLIP-NaViT and the glue.

The language model is Qwen2 with two experts per layer: every token runs the attention projections,
q/k RMSNorms, norms and MLP of one expert (``und``: the plain names, for text and ViT tokens; ``gen``:
the ``*_moe_gen`` names, for VAE latent tokens) while attention itself is shared over the whole packed
sequence. The blocks are transformers' Qwen2 pieces (RMSNorm, MLP, rotary embedding) and SigLIP's encoder
layers; attention is plain SDPA with explicit masks over a per-branch KV cache (:class:`Context`).

Sizes come from ``llm_config.json`` / ``vit_config.json`` and, for the values upstream's ``app.py``
hard-codes (latent patch size, position-table sides), from the tensor shapes in the checkpoint header.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.qwen2.configuration_qwen2 import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2MLP,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
    apply_rotary_pos_emb,
)
from transformers.models.siglip.configuration_siglip import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipEncoder

CONNECTOR_ACT = "gelu_pytorch_tanh"  # app.py: BagelConfig(connector_act=...)
TIME_FREQUENCIES = 256  # TimestepEmbedder's frequency_embedding_size


@dataclass
class BagelConfig:
    """Everything the modules need; :meth:`from_folder` reads it as upstream's ``app.py`` builds it."""

    llm: Qwen2Config
    vit: SiglipVisionConfig
    latent_channels: int = 16
    latent_patch_size: int = 2
    max_latent_size: int = 64
    vit_max_num_patch_per_side: int = 70
    vae_downsample: int = 8
    connector_act: str = CONNECTOR_ACT

    @property
    def patch_latent_dim(self) -> int:
        return self.latent_patch_size**2 * self.latent_channels

    @property
    def latent_downsample(self) -> int:
        """Pixels per latent token along a side (VAE downsample x latent patch)."""
        return self.vae_downsample * self.latent_patch_size

    @classmethod
    def from_folder(cls, root: Path, weights: str = "ema.safetensors", ae: str = "ae.safetensors") -> BagelConfig:
        """The config app.py builds: the two JSON files, then its fixed overrides; table sides from shapes."""
        return cls.from_shapes(
            read_llm_config(root / "llm_config.json"),
            read_vit_config(root / "vit_config.json"),
            header_shapes(root / weights),
            header_shapes(root / ae),
        )

    @classmethod
    def from_shapes(cls, llm: Qwen2Config, vit: SiglipVisionConfig, shapes: dict, ae_shapes: dict) -> BagelConfig:
        """Sizes app.py hard-codes (64 latent / 70 ViT positions a side, latent patch 2), read off the tensors."""
        z_channels = ae_shapes["decoder.conv_in.weight"][1]
        levels = len({k.split(".")[2] for k in ae_shapes if k.startswith("encoder.down.")})
        return cls(
            llm=llm,
            vit=vit,
            latent_channels=z_channels,
            latent_patch_size=math.isqrt(shapes["vae2llm.weight"][1] // z_channels),
            max_latent_size=math.isqrt(shapes["latent_pos_embed.pos_embed"][0]),
            vit_max_num_patch_per_side=math.isqrt(shapes["vit_pos_embed.pos_embed"][0]),
            vae_downsample=2 ** (levels - 1),
        )


def read_llm_config(path: Path) -> Qwen2Config:
    config = Qwen2Config(**json.loads(Path(path).read_text(encoding="utf-8")))
    config.tie_word_embeddings = False  # app.py; lm_head is its own tensor
    return config


def read_vit_config(path: Path) -> SiglipVisionConfig:
    config = SiglipVisionConfig(**json.loads(Path(path).read_text(encoding="utf-8")))
    config.num_hidden_layers -= 1  # app.py: the last layer of the file's count is not built (27 -> 26)
    config._attn_implementation = "sdpa"
    return config


def header_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header, without reading any weights."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


# -- the KV cache of one branch ------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """One branch's cache: per-layer (k, v) of shape (kv_heads, length, head_dim), and the next RoPE position.

    Appending returns a new Context and never writes into the old tensors, so a branch is copied for
    free (classifier-free guidance keeps the context as it stood before a segment).
    """

    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    length: int = 0
    rope: int = 0
    segments: tuple[str, ...] = field(default=())  # what was appended, for reports and tests


# -- modules ------------------------------------------------------------------------------------
def _routed(x: torch.Tensor, split: tuple[torch.Tensor, torch.Tensor] | None, und: nn.Module, gen: nn.Module):
    """Apply ``und`` to the understanding tokens and ``gen`` to the generation tokens (MoT routing)."""
    if split is None:
        return und(x)
    und_idx, gen_idx = split
    a, b = und(x[und_idx]), gen(x[gen_idx])
    out = a.new_empty((x.shape[0], *a.shape[1:]))
    out[und_idx] = a
    out[gen_idx] = b.to(a.dtype)
    return out


class MoTAttention(nn.Module):
    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        hidden, q_out, kv_out = config.hidden_size, self.heads * self.head_dim, self.kv_heads * self.head_dim
        eps = config.rms_norm_eps
        for suffix in ("", "_moe_gen"):
            setattr(self, f"q_proj{suffix}", nn.Linear(hidden, q_out, bias=True))
            setattr(self, f"k_proj{suffix}", nn.Linear(hidden, kv_out, bias=True))
            setattr(self, f"v_proj{suffix}", nn.Linear(hidden, kv_out, bias=True))
            setattr(self, f"o_proj{suffix}", nn.Linear(q_out, hidden, bias=False))
            setattr(self, f"q_norm{suffix}", Qwen2RMSNorm(self.head_dim, eps=eps))
            setattr(self, f"k_norm{suffix}", Qwen2RMSNorm(self.head_dim, eps=eps))

    def forward(self, x, cos, sin, split, past, mask):
        n = x.shape[0]
        q = _routed(x, split, self.q_proj, self.q_proj_moe_gen).view(n, self.heads, self.head_dim)
        k = _routed(x, split, self.k_proj, self.k_proj_moe_gen).view(n, self.kv_heads, self.head_dim)
        v = _routed(x, split, self.v_proj, self.v_proj_moe_gen).view(n, self.kv_heads, self.head_dim)
        q = _routed(q, split, self.q_norm, self.q_norm_moe_gen)  # per-head RMSNorm before RoPE
        k = _routed(k, split, self.k_norm, self.k_norm_moe_gen)
        q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)
        out = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask, enable_gqa=True)
        out = out[0].transpose(0, 1).reshape(n, self.heads * self.head_dim)
        return _routed(out, split, self.o_proj, self.o_proj_moe_gen), (k, v)


class MoTDecoderLayer(nn.Module):
    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.self_attn = MoTAttention(config)
        self.mlp = Qwen2MLP(config)
        self.mlp_moe_gen = Qwen2MLP(config)
        eps = config.rms_norm_eps
        self.input_layernorm = Qwen2RMSNorm(config.hidden_size, eps=eps)
        self.input_layernorm_moe_gen = Qwen2RMSNorm(config.hidden_size, eps=eps)
        self.post_attention_layernorm = Qwen2RMSNorm(config.hidden_size, eps=eps)
        self.post_attention_layernorm_moe_gen = Qwen2RMSNorm(config.hidden_size, eps=eps)

    def forward(self, x, cos, sin, split, past, mask):
        y = _routed(x, split, self.input_layernorm, self.input_layernorm_moe_gen)
        attn, kv = self.self_attn(y, cos, sin, split, past, mask)
        x = x + attn
        y = _routed(x, split, self.post_attention_layernorm, self.post_attention_layernorm_moe_gen)
        return x + _routed(y, split, self.mlp, self.mlp_moe_gen), kv


class MoTModel(nn.Module):
    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MoTDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.norm_moe_gen = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Qwen2RotaryEmbedding(config=config)


class MoTForCausalLM(nn.Module):
    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.model = MoTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)


class NaViTEmbeddings(nn.Module):
    """SigLIP patch + position embedding on packed patches (upstream turns the conv into this Linear)."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Linear(config.num_channels * config.patch_size**2, config.hidden_size)
        self.position_embedding = nn.Embedding((config.image_size // config.patch_size) ** 2, config.hidden_size)

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.patch_embedding(patches) + self.position_embedding(position_ids)


class NaViTTransformer(nn.Module):
    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.embeddings = NaViTEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """One image's tokens (N, 3*p*p) -> (N, hidden), full attention within the image."""
        x = self.embeddings(patches, position_ids)[None]
        return self.post_layernorm(self.encoder(inputs_embeds=x).last_hidden_state)[0]


class NaViTModel(nn.Module):
    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.vision_model = NaViTTransformer(config)


class MLPConnector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.act = ACT2FN[act]
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PositionEmbedding(nn.Module):
    """A fixed 2-D sin-cos table (stored in the checkpoint), indexed by row * side + col."""

    def __init__(self, side: int, hidden: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(side * side, hidden), requires_grad=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.pos_embed[position_ids]


class TimestepEmbedder(nn.Module):
    """DiT's sinusoidal embedding of the raw flow time t in [0, 1] (cos half first), then an MLP."""

    def __init__(self, hidden: int, frequencies: int = TIME_FREQUENCIES) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class Bagel(nn.Module):
    """The whole ``ema.safetensors`` model (everything but the VAE), with segment-level inference calls."""

    def __init__(self, config: BagelConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.llm.hidden_size
        self.language_model = MoTForCausalLM(config.llm)
        self.vit_model = NaViTModel(config.vit)
        self.connector = MLPConnector(config.vit.hidden_size, hidden, config.connector_act)
        self.vit_pos_embed = PositionEmbedding(config.vit_max_num_patch_per_side, hidden)
        self.time_embedder = TimestepEmbedder(hidden)
        self.vae2llm = nn.Linear(config.patch_latent_dim, hidden)
        self.llm2vae = nn.Linear(hidden, config.patch_latent_dim)
        self.latent_pos_embed = PositionEmbedding(config.max_latent_size, hidden)

    @property
    def dtype(self) -> torch.dtype:
        return self.vae2llm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.vae2llm.weight.device

    # -- inputs of the LLM ---------------------------------------------------------------------
    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.model.embed_tokens(ids)

    def embed_vit(self, patches: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """LLM input rows of one image's ViT tokens: connector(SigLIP(patches)) + vit_pos_embed."""
        features = self.vit_model.vision_model(patches.to(self.dtype), position_ids)
        return self.connector(features) + self.vit_pos_embed(position_ids)

    def embed_latents(self, tokens: torch.Tensor, t: float | torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """LLM input rows of latent tokens at flow time t: vae2llm(z) + time_embedder(t) + latent_pos_embed."""
        t = torch.as_tensor(t, dtype=torch.float32, device=tokens.device).reshape(1)
        return self.vae2llm(tokens.to(self.dtype)) + self.time_embedder(t) + self.latent_pos_embed(position_ids)

    # -- one segment through the LLM ----------------------------------------------------------------
    def forward_segment(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor,
        context: Context,
        *,
        causal: bool,
        gen_tokens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...]]:
        """Run a segment over a branch's cache; returns its final-norm hidden states and the merged K/V.

        The segment sees the whole cache; inside itself it is causal (text) or bidirectional (image
        blocks). ``gen_tokens`` marks the rows that take the generation expert (latent tokens).
        """
        lm = self.language_model.model
        n = embeds.shape[0]
        split = None
        if gen_tokens is not None and bool(gen_tokens.any()):
            split = (torch.nonzero(~gen_tokens)[:, 0], torch.nonzero(gen_tokens)[:, 0])
        mask = None
        if causal and n > 1:
            inner = torch.ones(n, n, dtype=torch.bool, device=embeds.device).tril()
            mask = torch.cat([inner.new_ones(n, context.length), inner], dim=1)
        x = embeds.to(self.dtype)
        cos, sin = lm.rotary_emb(x, positions[None])
        cos, sin = cos[0], sin[0]
        kv = []
        for index, layer in enumerate(lm.layers):
            past = context.kv[index] if context.kv else None
            x, layer_kv = layer(x, cos, sin, split, past, mask)
            kv.append(layer_kv)
        x = _routed(x, split, lm.norm, lm.norm_moe_gen)
        return x, tuple(kv)


def sincos_table(side: int, hidden: int) -> torch.Tensor:
    """The fixed 2-D sin-cos table upstream stores in ``*_pos_embed.pos_embed`` (row-major, w first)."""

    def one_axis(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))
    table = np.concatenate([one_axis(hidden // 2, grid[0]), one_axis(hidden // 2, grid[1])], axis=1)
    return torch.from_numpy(table).float()
