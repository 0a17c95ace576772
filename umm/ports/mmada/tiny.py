"""Tiny random MMaDA twin in the official layouts: the model repo (MMaDA config.json with every LLaDA
field, ``model.safetensors`` in the ``model.transformer.*`` names, tokenizer files) and ``magvitv2/``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from umm.ports.magvitv2.tiny import save_tiny_magvitv2
from umm.ports.mmada.model import KEY_MAPPING, llama_config

# Special tokens first, in an order that puts upstream's reserved ids at BOS + 4 … BOS + 14, as in LLaDA.
SPECIALS = [
    "<|startoftext|>", "<|endoftext|>", "<|reserved_token_2|>", "<|reserved_token_3|>", "<|soi|>", "<|eoi|>",
    "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>", "[iPAD]", "<|r2i|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|mdm_mask|>",
]


def to_official(name: str) -> str:
    """transformers Llama name -> MMaDA checkpoint name (the inverse of ``KEY_MAPPING``)."""
    for pattern, target in KEY_MAPPING.items():
        official = pattern.strip("^").replace("\\.", ".").replace(r"(\d+)", r"\1")
        regex = "^" + re.escape(target).replace(re.escape(r"\1"), r"(\d+)")
        match = re.match(regex, name)
        if match:
            rest = name[match.end():]
            return (official.replace(r"\1", match.group(1)) if match.groups() else official) + rest
    raise KeyError(name)


def build_tiny_mmada(directory: Path) -> None:
    from umm.tiny import train_tokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vq = save_tiny_magvitv2(directory / "magvitv2")
    tokenizer = train_tokenizer(SPECIALS, bos_token=SPECIALS[0], eos_token=SPECIALS[1], pad_token=SPECIALS[1],
                                mask_token="<|mdm_mask|>")
    tokenizer.save_pretrained(directory)
    rows = len(tokenizer) + vq.codebook_size
    config = {
        "architectures": ["MMadaModelLM"], "model_type": "mmada", "activation_type": "silu", "alibi": False,
        "alibi_bias_max": 8.0, "attention_dropout": 0.0, "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True, "bias_for_layer_norm": False, "block_group_size": 1,
        "block_type": "llama", "codebook_size": vq.codebook_size, "d_model": 64, "embedding_dropout": 0.0,
        "embedding_size": rows, "eos_token_id": tokenizer.eos_token_id, "flash_attention": False,
        "include_bias": False, "include_qkv_bias": False, "init_device": "meta", "init_fn": "mitchell",
        "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms", "layer_norm_with_affine": True,
        "llm_vocab_size": len(tokenizer), "mask_token_id": tokenizer.convert_tokens_to_ids("<|mdm_mask|>"),
        "max_sequence_length": 4096, "mlp_hidden_size": 128, "mlp_ratio": 4, "n_heads": 4, "n_kv_heads": 4,
        "n_layers": 2, "new_vocab_size": rows, "num_new_special_tokens": 0, "num_vq_tokens": 16,
        "pad_token_id": tokenizer.eos_token_id, "precision": "amp_bf16", "residual_dropout": 0.0,
        "rms_norm_eps": 1e-5, "rope": True, "rope_full_precision": True, "rope_theta": 500000.0,
        "scale_logits": False, "torch_dtype": "float32", "use_cache": False, "vocab_size": rows,
        "weight_tying": False,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(config)).eval()
    state = {to_official(k): v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
