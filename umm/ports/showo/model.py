"""Show-o (v1): Phi-1.5 with per-head q/k LayerNorm over text + MagViTv2 image tokens.

The official repo (``showlab/show-o``, ``showlab/show-o-512x512``) holds a diffusers-style
``config.json`` (``_class_name: "Showo"``) and one fp32 ``pytorch_model.safetensors`` whose names are
``showo.<PhiForCausalLM names>``. The language model's own config is not in the repo: upstream fetches
it from ``llm_model_path`` (``microsoft/phi-1_5``) and then forces ``qk_layernorm=True``. transformers'
``PhiForCausalLM`` with that flag is the exact same network, so it hosts the weights; this module only
builds its config and strips the ``showo.`` prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

WEIGHTS = "pytorch_model.safetensors"
PREFIX = "showo."
# Special tokens upstream appends after the LLM vocabulary, in this order (training/prompting_utils.py):
# [PAD] first, then these nine; image codes follow (configs: num_new_special_tokens: 10).
SPECIALS = ("<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>")
NUM_NEW_SPECIAL_TOKENS = 10
MAX_TEXT_LEN = 128  # dataset.preprocessing.max_seq_length in every upstream config


@dataclass(frozen=True)
class ShowoIds:
    """Token ids of one Show-o checkpoint, all derived from its config and its text tokenizer."""

    llm_vocab_size: int
    codebook_size: int
    mask: int
    bos: int
    eos: int
    num_image_tokens: int
    max_text_len: int = MAX_TEXT_LEN

    @property
    def pad(self) -> int:
        return self.llm_vocab_size

    def special(self, name: str) -> int:
        return self.llm_vocab_size + 1 + SPECIALS.index(name)

    @property
    def soi(self) -> int:
        return self.special("<|soi|>")

    @property
    def eoi(self) -> int:
        return self.special("<|eoi|>")

    @property
    def t2i(self) -> int:
        return self.special("<|t2i|>")

    @property
    def mmu(self) -> int:
        return self.special("<|mmu|>")

    @property
    def offset(self) -> int:
        """Token id of image code 0."""
        return self.llm_vocab_size + NUM_NEW_SPECIAL_TOKENS

    @classmethod
    def from_config(cls, config: dict[str, Any], bos: int, eos: int, max_text_len: int = MAX_TEXT_LEN) -> ShowoIds:
        ids = cls(
            llm_vocab_size=int(config["llm_vocab_size"]),
            codebook_size=int(config["codebook_size"]),
            mask=int(config.get("mask_token_id", int(config["vocab_size"]) - 1)),
            bos=bos,
            eos=eos,
            num_image_tokens=int(config["num_vq_tokens"]),
            max_text_len=max_text_len,
        )
        if ids.offset + ids.codebook_size > int(config["vocab_size"]) - 1:
            raise ValueError(
                f"vocab_size {config['vocab_size']} cannot hold {ids.codebook_size} image codes after id {ids.offset}"
            )
        return ids


def phi_config(llm_config: dict[str, Any], vocab_size: int):
    """The Phi config upstream builds: the LLM's own config with q/k LayerNorm forced on, vocab resized."""
    from transformers import PhiConfig

    keep = {k: v for k, v in llm_config.items() if k not in ("architectures", "auto_map", "transformers_version")}
    config = PhiConfig(**keep)
    config.qk_layernorm = True  # upstream models/phi.py sets it whatever the file says
    config.vocab_size = vocab_size
    config._attn_implementation = "sdpa"
    return config


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_language_model(
    root: Path, llm_config: dict[str, Any], dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """``PhiForCausalLM`` with the repo's ``showo.*`` weights (strict: every name must match)."""
    from accelerate import init_empty_weights
    from safetensors.torch import load_file
    from transformers import PhiForCausalLM

    config = read_json(Path(root) / "config.json")
    weights = Path(root) / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"no safetensors weights found in {root} (expected {WEIGHTS})")
    with init_empty_weights(include_buffers=False):
        model = PhiForCausalLM(phi_config(llm_config, int(config["vocab_size"])))
    state = load_file(weights)
    unexpected = [k for k in state if not k.startswith(PREFIX)]
    if unexpected:
        raise KeyError(f"parameters outside {PREFIX!r} in {weights.name} (a CLIP variant?): {unexpected[:5]}")
    state = {k[len(PREFIX):]: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
