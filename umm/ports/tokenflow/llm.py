"""TokenFlow's text-to-image LLM (``LlavaLlamaForCausalLM`` of ByteFlow-AI/TokenFlow ``t2i/``).

A Llama-2-7B whose decoder layer is *not* the stock pre-norm one: upstream normalises the outputs of
attention and MLP (``h += input_layernorm(attn(h)); h += post_attention_layernorm(mlp(h))``) and every
attention has a per-head q/k RMSNorm with a fixed eps of 1e-6 before RoPE. That is exactly Qwen3's
attention, so the modules below are transformers' Qwen3 attention / MLP / RMSNorm / rotary embedding,
composed in upstream's order and named as upstream names them, so the official safetensors load
unchanged. Image positions get a projected codebook feature plus a level (scale) embedding and an
absolute position embedding (``mm_projector``, ``lvl_embed``, ``pos_1LC``).

The block-causal mask by scale (bidirectional inside a scale, causal across scales) lets a KV cache
hold every earlier scale, so each scale is one forward over its own tokens only; upstream recomputes
the whole sequence per scale (``use_cache=False``). Both paths are here: :class:`ScaleKVCache`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3MLP, Qwen3RMSNorm, Qwen3RotaryEmbedding

# upstream llava_arch.QKNorm: LlamaRMSNorm(head_dim, eps=1e-6), whatever the config's rms_norm_eps.
QK_NORM_EPS = 1e-6


def text_config(config: dict) -> Qwen3Config:
    """Qwen3 module settings from the checkpoint's ``llava_llama`` config.json (every size read from it)."""
    heads = int(config["num_attention_heads"])
    if config.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ValueError(f"unsupported mm_projector_type {config.get('mm_projector_type')!r} (expected mlp2x_gelu)")
    out = Qwen3Config(
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["hidden_size"]),
        intermediate_size=int(config["intermediate_size"]),
        num_hidden_layers=int(config["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(config.get("num_key_value_heads", heads)),
        head_dim=int(config.get("head_dim") or config["hidden_size"] // heads),
        hidden_act=config.get("hidden_act", "silu"),
        max_position_embeddings=int(config.get("max_position_embeddings", 4096)),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        attention_bias=bool(config.get("attention_bias", False)),
        tie_word_embeddings=False,
    )
    out._attn_implementation = "sdpa"
    out.mm_hidden_size = int(config["mm_hidden_size"])
    return out


class TokenFlowAttention(Qwen3Attention):
    """Qwen3 attention with its q/k norms stored as upstream's ``qknorm.query_norm`` / ``qknorm.key_norm``."""

    def __init__(self, config: Qwen3Config, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        del self.q_norm, self.k_norm
        self.qknorm = nn.Module()
        self.qknorm.query_norm = Qwen3RMSNorm(self.head_dim, eps=QK_NORM_EPS)
        self.qknorm.key_norm = Qwen3RMSNorm(self.head_dim, eps=QK_NORM_EPS)

    @property
    def q_norm(self) -> Qwen3RMSNorm:  # what Qwen3Attention.forward calls
        return self.qknorm.query_norm

    @property
    def k_norm(self) -> Qwen3RMSNorm:
        return self.qknorm.key_norm


class TokenFlowDecoderLayer(nn.Module):
    """Upstream's layer order: no norm before attention or MLP, one after each (then the residual)."""

    def __init__(self, config: Qwen3Config, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = TokenFlowAttention(config, layer_idx)
        self.mlp = Qwen3MLP(config)
        self.input_layernorm = Qwen3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = Qwen3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden, position_embeddings, mask, cache) -> torch.Tensor:
        attn, _ = self.self_attn(hidden, position_embeddings, mask, cache)
        hidden = hidden + self.input_layernorm(attn)
        return hidden + self.post_attention_layernorm(self.mlp(hidden))


class TokenFlowModel(nn.Module):
    """``model.*`` of the checkpoint: the decoder plus the image-input embeddings."""

    def __init__(self, config: Qwen3Config, scales: tuple[int, ...]) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, hidden)
        self.layers = nn.ModuleList(TokenFlowDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = Qwen3RMSNorm(hidden, eps=config.rms_norm_eps)
        self.rotary_emb = Qwen3RotaryEmbedding(config)
        projector = (nn.Linear(config.mm_hidden_size, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.mm_projector = nn.Sequential(*projector)  # mlp2x_gelu: Linear, GELU (erf), Linear
        self.lvl_embed = nn.Embedding(len(scales) + 1, hidden)  # 0: text and the first scale
        self.pos_1LC = nn.Parameter(torch.zeros(sum(s * s for s in scales), hidden))


class TokenFlowForCausalLM(nn.Module):
    def __init__(self, config: Qwen3Config, scales: tuple[int, ...]) -> None:
        super().__init__()
        self.config = config
        self.scales = tuple(int(s) for s in scales)
        self.model = TokenFlowModel(config, self.scales)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def forward(
        self, embeds: torch.Tensor, start: int, mask: torch.Tensor, cache: ScaleKVCache | None = None,
        rows: slice = slice(None),
    ) -> torch.Tensor:
        """fp32 logits of ``embeds`` at positions ``start …`` (``mask`` additive, keys = cache + these).

        ``rows`` picks the positions whose logits are wanted (the head over a 64k vocabulary is costly).
        """
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)[None].expand(embeds.shape[0], -1)
        position_embeddings = self.model.rotary_emb(embeds, positions)
        hidden = embeds
        for layer in self.model.layers:
            hidden = layer(hidden, position_embeddings, mask, cache)
        return self.lm_head(self.model.norm(hidden[:, rows])).float()


class ScaleKVCache:
    """Keys and values of the positions run so far, per layer (what ``Qwen3Attention`` calls ``update`` on).

    ``upto``/``commit`` serve the multi-loop refinement: a re-run of scale k attends to the cache up to
    scale k's start and must not replace scale k's entries, because the next scale sees scale k's
    regular input again (upstream rebuilds every input from the codes each forward).
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.upto: int | None = None
        self.commit = True

    @property
    def length(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx < len(self.keys):
            old_k, old_v = self.keys[layer_idx], self.values[layer_idx]
            if self.upto is not None:
                old_k, old_v = old_k[:, :, : self.upto], old_v[:, :, : self.upto]
            key, value = torch.cat([old_k, key], dim=2), torch.cat([old_v, value], dim=2)
        if self.commit:
            if layer_idx < len(self.keys):
                self.keys[layer_idx], self.values[layer_idx] = key, value
            else:
                self.keys.append(key)
                self.values.append(value)
        return key, value
