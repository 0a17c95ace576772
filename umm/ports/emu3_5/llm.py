"""Emu3.5's LLM is transformers' ``Qwen3ForCausalLM`` (per-head q/k RMSNorm before RoPE, no biases).

The checkpoint's ``config.json`` says ``model_type: "Emu3"`` (upstream's own class), which
transformers does not know, so the config is read as a dict and its fields become a ``Qwen3Config``;
the weights then load strictly, with no renames (golden README section 4.3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QWEN3_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "max_position_embeddings",
    "hidden_act", "pad_token_id", "bos_token_id", "eos_token_id", "rope_scaling",
)


def read_config(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))


def qwen3_config(emu3: dict[str, Any]):
    """A ``Qwen3Config`` with the sizes of an Emu3.5 ``config.json`` (every size read, none assumed)."""
    from transformers import Qwen3Config

    fields = {k: emu3[k] for k in QWEN3_FIELDS if emu3.get(k) is not None}
    if "head_dim" not in fields:  # upstream's default when the field is absent
        fields["head_dim"] = emu3["hidden_size"] // emu3["num_attention_heads"]
    theta = fields.pop("rope_theta", 1e6)
    scaling = fields.pop("rope_scaling", None)
    if scaling:
        raise ValueError(f"rope_scaling {scaling!r} in the Emu3.5 config is not supported by this port")
    return Qwen3Config(
        **fields,
        rope_parameters={"rope_type": "default", "rope_theta": float(theta)},
        tie_word_embeddings=bool(emu3.get("tie_word_embeddings", False)),
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
    )


def load_llm(directory: Path, *, dtype, device_map: Any = None, **kwargs: Any):
    """``Qwen3ForCausalLM`` from an Emu3.5 checkpoint folder (sharded safetensors), strictly."""
    from transformers import Qwen3ForCausalLM

    config = qwen3_config(read_config(directory))
    model, info = Qwen3ForCausalLM.from_pretrained(
        directory, config=config, dtype=dtype, device_map=device_map, use_safetensors=True,
        output_loading_info=True, **kwargs,
    )
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise ValueError(f"the Emu3.5 checkpoint does not match Qwen3ForCausalLM: {bad}")
    return model.eval()
