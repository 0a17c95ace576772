"""Tiny random TokenFlow checkpoints in the official layouts, for tests and the demo.

Main repo (``ByteFlow-AI/TokenFlow-t2i``): ``config.json`` (``llava_llama`` fields), ``generation_config.json``,
safetensors weights in the official names, the tokenizer files (Llama vocabulary, then ``[PAD]``, then one
``<vq_token_i>`` per code so the vocabulary ends at the last image token). Component ``tokenflow``
(``ByteFlow-AI/TokenFlow``): ``tokenflow_clipb_32k_enhanced.pt``, a trainer-style pickle holding the
tokenizer's state dict (plus keys text-to-image does not read), converted with ``umm.convert`` as a user
would.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from umm.ports.tokenflow.loading import build_llm
from umm.ports.tokenflow.vq import TokenFlowPixelDecoder, port_to_official

TOKENIZER_FILE = "tokenflow_clipb_32k_enhanced.pt"
VQ_TOKEN = "<vq_token_%d>"  # upstream constants.DEFAULT_VQ_TOKEN_TEMPLATE
TINY_VQ = {  # codebook dims as the official (32 + 8); a 2-level decoder: 16x16 latent -> 32x32 image
    "codebook_size": 64, "semantic_dim": 32, "pixel_dim": 8, "latent_channels": 32, "base_channels": 32,
    "channel_multiplier": [1, 1], "num_res_blocks": 1, "out_channels": 3,
}


def write_tiny(directory: Path, scales: tuple[int, ...], component: str, nesting: str = "ema") -> None:
    from umm.convert import convert_file
    from umm.tiny import train_tokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    size = TINY_VQ["codebook_size"]
    tokenizer = train_tokenizer(["<unk>", "<s>", "</s>"], vocab_size=320,
                                bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    tokenizer.add_tokens([VQ_TOKEN % i for i in range(size)], special_tokens=True)
    tokenizer.save_pretrained(directory)
    config = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "hidden_act": "silu",
        "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": len(tokenizer), "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 4096, "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "mm_hidden_size": TINY_VQ["semantic_dim"] + TINY_VQ["pixel_dim"], "mm_projector_type": "mlp2x_gelu",
        "mm_use_vq_token": True, "mm_vision_tower": "", "mm_vision_vq_type": "TOKEN_FLOW",
        "tokenizer_model_max_length": 2048, "tokenizer_padding_side": "right", "use_cache": False,
        "vq_codebook_size": size, "torch_dtype": "float32",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"], "use_cache": False}
    ), encoding="utf-8")
    lm = build_llm(config, scales, device="cpu")
    state = {k: randomise(k, v) for k, v in lm.state_dict().items()}
    from safetensors.torch import save_file

    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    write_tokenizer_pickle(directory / component / TOKENIZER_FILE, nesting)
    convert_file(directory / component / TOKENIZER_FILE)


def write_tokenizer_pickle(path: Path, nesting: str = "ema") -> dict[str, torch.Tensor]:
    """A pickle shaped like a TokenFlow training checkpoint (vq_train.py) with tiny random weights."""
    torch.manual_seed(1)
    decoder = TokenFlowPixelDecoder(TINY_VQ)
    state = {k: randomise(k, v) for k, v in port_to_official(decoder.state_dict()).items()}
    # what the official file also holds and text-to-image never reads
    state["quantize.codebook_used"] = torch.zeros(4096)
    state["quant_conv.weight"] = torch.randn(TINY_VQ["pixel_dim"], TINY_VQ["latent_channels"], 1, 1)
    state["encoder.conv_in.weight"] = torch.randn(32, 3, 3, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {nesting: state, "steps": 1000, "args": argparse.Namespace(ema=nesting == "ema", vq_model="TokenFlow")}
    if nesting == "ema":
        checkpoint["model"] = {k: v + 1 for k, v in state.items()}  # the trainer's raw weights: not the ones used
    torch.save(checkpoint, path)
    return state


def randomise(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Seeded weights of a sensible scale: weights / sqrt(fan_in), norms around 1, small biases."""
    if tensor.ndim == 0 or "inv_freq" in name:
        return tensor
    if name.endswith("bias"):
        return 0.05 * torch.randn_like(tensor)
    if tensor.ndim == 1:
        return 1 + 0.1 * torch.randn_like(tensor)
    fan_in = tensor[0].numel() if tensor.ndim > 1 else tensor.numel()
    return torch.randn_like(tensor) / fan_in ** 0.5
