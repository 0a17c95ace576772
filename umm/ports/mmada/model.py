"""MMaDA (LLaDA-8B backbone): a bidirectional Llama-style transformer over text and MagViTv2 image ids.

The official repos (``Gen-Verse/MMaDA-8B-Base``, ``-MixCoT``) hold an ``MMadaConfig`` config.json (LLaDA
field names, remote code) and sharded safetensors named ``model.transformer.*``. The network is exactly
transformers' ``LlamaForCausalLM`` (pre-norm RMSNorm blocks, SwiGLU with ``ff_proj`` as the gate, RoPE
θ = 500000, untied head) *without the causal mask*, so it loads there after a pure key rename
(:data:`KEY_MAPPING`, one pattern per target) and runs with an explicit 4-D additive mask — zeros, or
``finfo.min`` where a padding mask forbids a pair; a 2-D mask or none would make Llama causal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

KEY_MAPPING = {
    r"^model\.transformer\.wte\.": "model.embed_tokens.",
    r"^model\.transformer\.blocks\.(\d+)\.q_proj\.": r"model.layers.\1.self_attn.q_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.k_proj\.": r"model.layers.\1.self_attn.k_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.v_proj\.": r"model.layers.\1.self_attn.v_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_out\.": r"model.layers.\1.self_attn.o_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_proj\.": r"model.layers.\1.mlp.gate_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.up_proj\.": r"model.layers.\1.mlp.up_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_out\.": r"model.layers.\1.mlp.down_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_norm\.": r"model.layers.\1.input_layernorm.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_norm\.": r"model.layers.\1.post_attention_layernorm.",
    r"^model\.transformer\.ln_f\.": "model.norm.",
    r"^model\.transformer\.ff_out\.": "lm_head.",
}
# upstream training/prompting_utils.py reserved_token_mapping: LLaDA's reserved ids right after its BOS
# (126080): <|soi|> = BOS + 4 … <|r2i|> = BOS + 14. Kept as offsets so smaller vocabularies work too.
RESERVED = {"soi": 4, "eoi": 5, "sov": 6, "eov": 7, "t2i": 8, "mmu": 9, "t2v": 10, "v2v": 11, "lvg": 12,
            "ipad": 13, "r2i": 14}
MAX_TEXT_LEN = 512  # UniversalPrompting(max_text_len=512) in upstream's app.py / configs/mmada_demo.yaml


def llama_config(config: dict[str, Any]):
    """transformers ``LlamaConfig`` for an MMaDA / LLaDA config.json (refusing variants it cannot host)."""
    from transformers import LlamaConfig

    expected = {"block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms", "rope": True,
                "alibi": False, "weight_tying": False, "include_bias": False}
    wrong = {k: config.get(k) for k, v in expected.items() if k in config and config[k] != v}
    if wrong:
        raise ValueError(f"unsupported MMaDA/LLaDA variant: {wrong} (supported: {expected})")
    heads = int(config["n_heads"])
    hidden = int(config["mlp_hidden_size"]) if config.get("mlp_hidden_size") else int(config["mlp_ratio"]) * int(
        config["d_model"])
    return LlamaConfig(
        vocab_size=int(config.get("embedding_size") or config["vocab_size"]),
        hidden_size=int(config["d_model"]),
        intermediate_size=hidden,
        num_hidden_layers=int(config["n_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(config.get("n_kv_heads") or heads),
        hidden_act="silu",
        max_position_embeddings=int(config.get("max_sequence_length", 4096)),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        rope_theta=float(config.get("rope_theta", 500000.0)),
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        pad_token_id=config.get("pad_token_id"),
        eos_token_id=config.get("eos_token_id"),
    )


def load_model(source: str, config: dict[str, Any], dtype: torch.dtype, **kwargs: Any) -> torch.nn.Module:
    """The official checkpoint in ``LlamaForCausalLM`` (``kwargs``: revision, device_map, … for from_pretrained)."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(
        source, config=llama_config(config), key_mapping=KEY_MAPPING, dtype=dtype, attn_implementation="sdpa",
        use_safetensors=True, **kwargs,
    ).eval()


def attention_bias(batch: int, length: int, dtype: torch.dtype, device, padding: torch.Tensor | None = None):
    """(B, 1, L, L) additive mask: 0 everywhere, or upstream's ``m_i ∧ m_j`` rule from a 0/1 padding mask."""
    bias = torch.zeros(batch, 1, length, length, dtype=dtype, device=device)
    if padding is not None:
        allowed = (padding[:, :, None].bool() & padding[:, None, :].bool())[:, None]
        bias = bias.masked_fill(~allowed, torch.finfo(dtype).min)
    return bias


def forward(model: torch.nn.Module, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
    """Bidirectional logits (fp32) of ``x`` (B, L); positions 0 … L−1 on every row, pads included."""
    dtype = next(model.parameters()).dtype
    mask = attention_bias(x.shape[0], x.shape[1], dtype, x.device, padding)
    positions = torch.arange(x.shape[1], device=x.device)[None].expand_as(x)
    return model(input_ids=x, attention_mask=mask, position_ids=positions, use_cache=False).logits.float()


@dataclass(frozen=True)
class MmadaIds:
    bos: int
    eos: int
    mask: int
    offset: int  # token id of image code 0 = len(text tokenizer)
    codebook_size: int
    start_header: int
    end_header: int
    eot_id: int
    max_text_len: int = MAX_TEXT_LEN

    def reserved(self, name: str) -> int:
        return self.bos + RESERVED[name]

    @classmethod
    def from_tokenizer(cls, tokenizer, config: dict[str, Any], max_text_len: int = MAX_TEXT_LEN) -> MmadaIds:
        ids = cls(
            bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, mask=int(config["mask_token_id"]),
            offset=len(tokenizer), codebook_size=int(config["codebook_size"]),
            start_header=tokenizer.convert_tokens_to_ids("<|start_header_id|>"),
            end_header=tokenizer.convert_tokens_to_ids("<|end_header_id|>"),
            eot_id=tokenizer.convert_tokens_to_ids("<|eot_id|>"), max_text_len=max_text_len,
        )
        rows = int(config.get("embedding_size") or config["vocab_size"])
        if ids.offset + ids.codebook_size > rows:
            raise ValueError(f"{rows} embedding rows cannot hold {ids.codebook_size} image codes after id {ids.offset}")
        return ids
