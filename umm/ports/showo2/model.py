"""Show-o2 (showlab): a Qwen2.5 LLM over Wan2.1-VAE latents, with a dual-path image embedding and a flow head.

Parameter names and shapes are upstream's ``Showo2Qwen2_5`` (showlab/Show-o, ``show-o2/``), so the official
state dict loads unchanged:

* ``showo`` is transformers' stock ``Qwen2ForCausalLM`` (vocab resized to ``llm_vocab_size``);
* ``image_embedder_und`` / ``image_embedder_gen`` are 2×2 stride-2 convolutions over the latents;
* ``position_embedding`` + ``und_trans`` are SigLIP's position table and encoder layers (transformers'
  ``SiglipEncoder`` with the last layer dropped, and no post-layernorm);
* ``fusion_proj`` = RMSNorm → Linear → GELU → Linear over ``[semantic ; low-level]``;
* ``time_embed`` (+ ``time_embed_proj`` / ``diff_proj`` when the LLM width differs from the head's) and the
  flow head ``diffusion_head_a`` (adaLN-modulated attention blocks) / ``diffusion_head_b`` (final layer).

The flow head's size is not in any config file upstream (``DiffusionHeadConfig`` hard-codes it); it is
:class:`HeadConfig` here, whose defaults are upstream's numbers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """The flow head's numbers (upstream ``DiffusionHeadConfig``; not stored in the checkpoint's config)."""

    hidden_size: int = 2048
    head_dim: int = 64
    intermediate_size: int = 8192
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    rms_norm_eps: float = 1e-5
    qk_norm: bool = True
    rope_theta: float = 500000.0
    rope_scaling: dict[str, Any] = field(
        default_factory=lambda: {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    )
    frequency_embedding_size: int = 256

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32, scaled in the input dtype (upstream's and Qwen2's formula)."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class PatchEmbed(nn.Module):
    """A k×k stride-k convolution, flattened to (B, tokens, C) in row-major order."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """t in [0, 1] (raw, no ×1000) → [cos ; sin] features → MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.reshape(-1, 1).float() * freqs[None]
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(features.to(dtype))


def llama3_inv_freq(head: HeadConfig) -> torch.Tensor:
    """RoPE inverse frequencies with llama3 scaling (the head's ``rope_scaling``)."""
    dim = head.head_dim
    inv = 1.0 / (head.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = head.rope_scaling or {}
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return inv
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > original / low, inv / factor, inv)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < original / high) & ~(wavelen > original / low)
    return torch.where(medium, smoothed, scaled)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class HeadAttention(nn.Module):
    """GQA attention without biases, per-head q/k RMSNorm (eps 1e-6) before RoPE, additive mask."""

    def __init__(self, head: HeadConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = head.num_attention_heads, head.num_key_value_heads, head.head_dim
        self.q_proj = nn.Linear(head.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(head.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(head.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, head.hidden_size, bias=False)
        if head.qk_norm:  # upstream sizes these hidden // heads (= head_dim in every released config)
            self.q_norm = RMSNorm(head.hidden_size // self.heads)
            self.k_norm = RMSNorm(head.hidden_size // self.heads)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.heads // self.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class HeadMLP(nn.Module):
    def __init__(self, head: HeadConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(head.hidden_size, head.intermediate_size, bias=False)
        self.up_proj = nn.Linear(head.hidden_size, head.intermediate_size, bias=False)
        self.down_proj = nn.Linear(head.intermediate_size, head.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x.float() * (1 + scale.float()) + shift.float()).to(x.dtype)


class ModulatedAttentionBlock(nn.Module):
    """A pre-norm attention + MLP block whose adaLN modulation applies on the image-block positions only."""

    def __init__(self, head: HeadConfig) -> None:
        super().__init__()
        self.self_attn = HeadAttention(head)
        self.mlp = HeadMLP(head)
        self.input_layernorm = RMSNorm(head.hidden_size, head.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(head.hidden_size, head.rms_norm_eps)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(head.hidden_size, 6 * head.hidden_size))

    def forward(self, x, temb, rope, mask, inside: torch.Tensor) -> torch.Tensor:
        sh1, sc1, g1, sh2, sc2, g2 = (c[:, None] for c in self.adaLN_modulation(temb).chunk(6, dim=1))
        off = ~inside  # (B, L, 1): outside the block shift = scale = 0 and gate = 1
        sh1, sc1, sh2, sc2 = (c.masked_fill(off, 0.0) for c in (sh1, sc1, sh2, sc2))
        g1, g2 = g1.masked_fill(off, 1.0), g2.masked_fill(off, 1.0)
        x = x + g1 * self.self_attn(modulate(self.input_layernorm(x), sh1, sc1), rope, mask)
        return x + g2 * self.mlp(modulate(self.post_attention_layernorm(x), sh2, sc2))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = RMSNorm(hidden_size)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, temb: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        shift, scale = (c[:, None].masked_fill(~inside, 0.0) for c in self.adaLN_modulation(temb).chunk(2, dim=1))
        return self.linear(modulate(self.norm_final(x), shift, scale))


def omni_mask(length: int, blocks: torch.Tensor) -> torch.Tensor:
    """(B, L, L) bool, row attends column: causal, plus full attention inside each row's image block.

    ``blocks`` is (B, 2) = (offset, length) per row (upstream's ``modality_positions``).
    """
    idx = torch.arange(length, device=blocks.device)
    causal = idx[None, :, None] >= idx[None, None, :]
    inside = block_positions(length, blocks)
    return causal | (inside[:, :, None] & inside[:, None, :])


def block_positions(length: int, blocks: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the positions [offset, offset + length) of each row's block."""
    idx = torch.arange(length, device=blocks.device)[None]
    start, size = blocks[:, :1], blocks[:, 1:]
    return (idx >= start) & (idx < start + size)


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (B, 1, Lq, Lk) additive mask (0 / dtype min) from a bool one, for SDPA and transformers."""
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill(~mask, torch.finfo(dtype).min)[:, None]


class Showo2Model(nn.Module):
    """Upstream's ``Showo2Qwen2_5`` module tree, built from the checkpoint's config and its two base configs."""

    def __init__(self, config: dict[str, Any], llm_config, vision_config, head: HeadConfig | None = None) -> None:
        from transformers import Qwen2Config, Qwen2ForCausalLM
        from transformers.models.siglip.modeling_siglip import SiglipEncoder

        super().__init__()
        if not config.get("add_time_embeds", True):  # every released checkpoint prepends the time token
            raise ValueError("Show-o2 checkpoints without the time token (add_time_embeds: false) are not supported")
        head = head or HeadConfig()
        self.config, self.head_config = dict(config), head
        llm_config = Qwen2Config(**{**llm_config.to_dict(), "vocab_size": config["llm_vocab_size"]})
        llm_config._attn_implementation = "sdpa"
        self.showo = Qwen2ForCausalLM(llm_config)
        hidden, clip, latent, patch = (
            config["hidden_size"], config["clip_latent_dim"], config["image_latent_dim"], config["patch_size"]
        )
        self.patch_size, self.latent_dim = patch, latent
        self.image_embedder_und = PatchEmbed(patch, latent, clip)
        self.image_embedder_gen = PatchEmbed(patch, latent, hidden)
        grid = vision_config.image_size // vision_config.patch_size
        self.position_embedding = nn.Embedding(grid * grid, vision_config.hidden_size)
        semantic = vision_config.__class__(**{**vision_config.to_dict(), "num_hidden_layers":
                                              vision_config.num_hidden_layers - 1})
        semantic._attn_implementation = "sdpa"
        self.und_trans = SiglipEncoder(semantic)
        self.fusion_proj = nn.Sequential(
            RMSNorm(clip + hidden), nn.Linear(clip + hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.time_embed = TimestepEmbedder(head.hidden_size, head.frequency_embedding_size)
        if hidden != head.hidden_size:
            self.diff_proj = nn.Sequential(
                nn.Linear(hidden, head.hidden_size), nn.GELU(), nn.Linear(head.hidden_size, head.hidden_size)
            )
            self.time_embed_proj = nn.Linear(head.hidden_size, hidden)
        self.diffusion_head_a = nn.ModuleList(
            ModulatedAttentionBlock(head) for _ in range(config["num_diffusion_layers"])
        )
        self.diffusion_head_b = FinalLayer(head.hidden_size, patch, latent)
        self.register_buffer("head_inv_freq", llama3_inv_freq(head), persistent=False)

    # -- image embedding --------------------------------------------------------------------
    def position_embeds(self, height: int, width: int) -> torch.Tensor:
        """(h·w, C): the SigLIP table as is when its size matches the grid, else bicubically resized.

        Upstream tests the table against the config's grid; resizing a table to its own size is the
        identity, so testing against the input grid gives the same result wherever upstream runs.
        """
        table = self.position_embedding.weight
        if table.shape[0] == height * width:
            return table
        side = math.isqrt(table.shape[0])
        grid = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(height * width, -1)

    def semantic(self, latents: torch.Tensor) -> torch.Tensor:
        """The SigLIP path: patch embedding + position table through the encoder layers (no post-LN)."""
        h, w = (s // self.patch_size for s in latents.shape[-2:])
        x = self.image_embedder_und(latents) + self.position_embeds(h, w).to(latents.dtype)
        return self.und_trans(inputs_embeds=x).last_hidden_state

    def image_embeds(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, N, D) fused image tokens of (B, C, 2h, 2w) latents."""
        dtype = self.showo.model.embed_tokens.weight.dtype
        latents = latents.to(dtype)
        both = torch.cat([self.semantic(latents), self.image_embedder_gen(latents)], dim=-1)
        return self.fusion_proj(both)

    def time_embeds(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(temb for the head's adaLN, the time token for the LLM) at times t (B,)."""
        dtype = self.showo.model.embed_tokens.weight.dtype
        temb = self.time_embed(t, dtype)
        token = self.time_embed_proj(temb) if hasattr(self, "time_embed_proj") else temb
        return temb, token

    def sequence_embeds(
        self, ids: torch.Tensor, blocks: torch.Tensor, time_token: torch.Tensor, image: torch.Tensor
    ) -> torch.Tensor:
        """Token embeddings with the time token at each block's offset and the image tokens after it."""
        embeds = self.showo.model.embed_tokens(ids.clamp(min=0))
        rows = []
        for i, (offset, length) in enumerate(blocks.tolist()):
            n = max(length - 1, 0)
            rows.append(torch.cat([embeds[i, :offset], time_token[i, None], image[i, :n], embeds[i, offset + 1 + n:]]))
        return torch.stack(rows)

    # -- the LLM ----------------------------------------------------------------------------
    def llm(self, embeds: torch.Tensor, mask: torch.Tensor, cache=None, start: int = 0) -> torch.Tensor:
        """Final-normed hidden states (B, L, D); ``mask`` is additive (B, 1, L, start + L)."""
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)
        out = self.showo.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions[None].expand(embeds.shape[0], -1),
            past_key_values=cache,
            use_cache=cache is not None,
            cache_position=positions,
        )
        return out.last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.showo.lm_head(hidden)

    # -- the flow head ----------------------------------------------------------------------
    def flow_head(
        self, hidden: torch.Tensor, temb: torch.Tensor, mask: torch.Tensor, blocks: torch.Tensor,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, L, p·p·C) head tokens at every position from the LLM's final-normed states."""
        x = self.diff_proj(hidden) if hasattr(self, "diff_proj") else hidden
        if trace is not None:
            trace["diff_proj_out"] = x
        positions = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        freqs = positions[:, None] * self.head_inv_freq.float()[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        rope = (emb.cos().to(x.dtype), emb.sin().to(x.dtype))
        inside = block_positions(x.shape[1], blocks)[..., None]
        for i, layer in enumerate(self.diffusion_head_a):
            x = layer(x, temb, rope, mask, inside)
            if trace is not None:
                trace[f"head_a{i}_out"] = x
        return self.diffusion_head_b(x, temb, inside)

    def velocity(self, tokens: torch.Tensor, blocks: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, C, 2h, 2w) from the head tokens after each block's time token.

        Token k holds the velocity of raster pixels 4k…4k+3 of the full latent grid (upstream's
        ``unpatchify``; training labels use the same layout), not of its own 2×2 patch.
        """
        out = []
        for i, (offset, length) in enumerate(blocks.tolist()):
            tok = tokens[i, offset + 1: offset + length]
            out.append(tok.reshape(-1, self.latent_dim).T.reshape(self.latent_dim, height, width))
        return torch.stack(out)

    def forward_velocity(
        self, ids: torch.Tensor, blocks: torch.Tensor, mask: torch.Tensor, latents: torch.Tensor, t: torch.Tensor,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One flow-head evaluation: latents x_t (B, C, 2h, 2w) at times t (B,) → velocity (B, C, 2h, 2w)."""
        image = self.image_embeds(latents)
        temb, token = self.time_embeds(t)
        embeds = self.sequence_embeds(ids, blocks, token, image)
        hidden = self.llm(embeds, mask)
        tokens = self.flow_head(hidden, temb, mask, blocks, trace)
        if trace is not None:
            trace.update(fused=image, temb=temb, time_token=token, input_embeds=embeds, last_hidden=hidden,
                         head_tokens=tokens)
        return self.velocity(tokens, blocks, *latents.shape[-2:]).to(latents.dtype)
