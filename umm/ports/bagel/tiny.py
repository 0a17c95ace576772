"""A tiny random Bagel checkpoint in the hub folder's layout (flat: ema/ae safetensors, two configs, tokenizer).

``ae.safetensors`` is written in the original BFL/LDM naming (see :func:`ldm_ae_shapes`), so the twin goes
through the same key conversion as the real file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
TINY_LLM = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 64,
    "intermediate_size": 128,
    "max_position_embeddings": 4096,
    "model_type": "qwen2",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}
TINY_VIT = {
    "hidden_size": 32,
    "image_size": 112,  # 8 patches a side
    "intermediate_size": 64,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,  # the model builds one fewer, as upstream does with the real 27
    "patch_size": 14,
}
TINY_AE = {"ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "z_channels": 16}
TINY_MAX_LATENT_SIZE = 8  # 8 latent tokens a side: up to 128 px (larger requests are scaled down)
TINY_LATENT_PATCH = 2


def ldm_ae_shapes(ch: int, ch_mult: list[int], num_res_blocks: int, z_channels: int,
                  in_channels: int = 3, out_channels: int = 3) -> dict[str, tuple[int, ...]]:
    """Every tensor of the original FLUX/LDM ``AutoEncoder`` with its shape (modeling/autoencoder.py)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def block(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def mid(prefix, c):
        block(f"{prefix}.mid.block_1", c, c)
        norm(f"{prefix}.mid.attn_1.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{prefix}.mid.attn_1.{part}", c, c, 1)
        block(f"{prefix}.mid.block_2", c, c)

    levels = len(ch_mult)
    conv("encoder.conv_in", in_channels, ch, 3)
    widths = [ch * m for m in ch_mult]
    cin = ch
    for i in range(levels):
        for j in range(num_res_blocks):
            block(f"encoder.down.{i}.block.{j}", cin, widths[i])
            cin = widths[i]
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", cin, cin, 3)
    mid("encoder", cin)
    norm("encoder.norm_out", cin)
    conv("encoder.conv_out", cin, 2 * z_channels, 3)

    cin = widths[-1]
    conv("decoder.conv_in", z_channels, cin, 3)
    mid("decoder", cin)
    for i in reversed(range(levels)):
        for j in range(num_res_blocks + 1):
            block(f"decoder.up.{i}.block.{j}", cin, widths[i])
            cin = widths[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", cin, cin, 3)
    norm("decoder.norm_out", cin)
    conv("decoder.conv_out", cin, out_channels, 3)
    return shapes


def random_ae_state(shapes: dict[str, tuple[int, ...]], generator: torch.Generator) -> dict[str, torch.Tensor]:
    state = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            is_norm = "norm" in name.rsplit(".", 2)[-2]
            base = 1.0 if is_norm and name.endswith("weight") else 0.0
            state[name] = base + 0.05 * torch.randn(shape, generator=generator)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state


def write_tiny(directory: Path) -> None:
    from safetensors.torch import save_file

    from umm.ports.bagel.model import Bagel, BagelConfig, read_llm_config, read_vit_config, sincos_table
    from umm.tiny import train_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(SPECIAL_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(directory)
    (directory / "llm_config.json").write_text(json.dumps({**TINY_LLM, "vocab_size": len(tokenizer)}, indent=2))
    (directory / "vit_config.json").write_text(json.dumps(TINY_VIT, indent=2))

    generator = torch.Generator().manual_seed(0)
    save_file(random_ae_state(ldm_ae_shapes(**TINY_AE), generator), str(directory / "ae.safetensors"))

    torch.manual_seed(0)
    config = BagelConfig(
        llm=read_llm_config(directory / "llm_config.json"),
        vit=read_vit_config(directory / "vit_config.json"),
        latent_channels=TINY_AE["z_channels"],
        latent_patch_size=TINY_LATENT_PATCH,
        max_latent_size=TINY_MAX_LATENT_SIZE,
        vit_max_num_patch_per_side=TINY_VIT["image_size"] // TINY_VIT["patch_size"],
        vae_downsample=2 ** (len(TINY_AE["ch_mult"]) - 1),
    )
    model = Bagel(config)
    hidden = config.llm.hidden_size
    with torch.no_grad():
        model.vit_pos_embed.pos_embed.copy_(sincos_table(config.vit_max_num_patch_per_side, hidden))
        model.latent_pos_embed.pos_embed.copy_(sincos_table(config.max_latent_size, hidden))
        for name, param in model.named_parameters():  # visible norms and experts that differ
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
        model.llm2vae.weight.normal_(0, hidden**-0.5)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "ema.safetensors"))
