"""Tiny random Show-o twin in the official layouts of its three repos (main, ``phi/``, ``magvitv2/``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from umm.ports.magvitv2.tiny import save_tiny_magvitv2
from umm.ports.showo.model import NUM_NEW_SPECIAL_TOKENS, PREFIX, WEIGHTS, phi_config

EOS = "<|endoftext|>"  # phi-1_5's BOS = EOS


def build_tiny_showo(directory: Path) -> None:
    from transformers import PhiForCausalLM

    from umm.tiny import train_tokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vq = save_tiny_magvitv2(directory / "magvitv2")
    tokenizer = train_tokenizer([EOS], bos_token=EOS, eos_token=EOS, unk_token=EOS)
    tokenizer.save_pretrained(directory / "phi")
    llm = {
        "model_type": "phi", "architectures": ["PhiForCausalLM"], "vocab_size": len(tokenizer) + 16,
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "hidden_act": "gelu_new", "max_position_embeddings": 2048,
        "layer_norm_eps": 1e-5, "partial_rotary_factor": 0.5, "rope_theta": 10000.0,
        "qk_layernorm": False, "tie_word_embeddings": False, "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    (directory / "phi" / "config.json").write_text(json.dumps(llm, indent=2), encoding="utf-8")
    llm_vocab = len(tokenizer)
    codebook = vq.codebook_size
    vocab = llm_vocab + NUM_NEW_SPECIAL_TOKENS + codebook + 1
    config = {
        "_class_name": "Showo", "_diffusers_version": "0.30.3", "w_clip_vit": False, "vocab_size": vocab,
        "llm_vocab_size": llm_vocab, "llm_model_path": "microsoft/phi-1_5", "codebook_size": codebook,
        "num_vq_tokens": 16, "load_from_showo": False, "mask_token_id": vocab - 1,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    torch.manual_seed(0)
    model = PhiForCausalLM(phi_config(llm, vocab)).eval()
    state = {PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / WEIGHTS, metadata={"format": "pt"})
