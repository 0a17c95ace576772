"""A tiny random Show-o2 checkpoint in the official layout, plus its base repos, for tests and the demo.

Layout (what the adapter reads from the hub): the model repo holds ``config.json`` and the pickled
``pytorch_model.bin`` (converted here with ``umm.convert.convert_file``, as ``python -m umm convert`` does
for a user), the ``llm`` component a Qwen2.5-style ``config.json`` + tokenizer, ``siglip`` a SigLIP
``config.json``, and ``vae`` a Wan diffusers repo with its ``vae/`` subfolder. ``diffusion_head_config.json``
shrinks the flow head (the real repos have none; the adapter then uses upstream's hard-coded size).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
]
TINY_HEAD = {"hidden_size": 48, "head_dim": 12, "intermediate_size": 96, "num_attention_heads": 4,
             "num_key_value_heads": 2}


def build_tiny(directory: Path) -> None:
    from diffusers import AutoencoderKLWan
    from transformers import Qwen2Config, SiglipConfig

    from umm.convert import convert_file
    from umm.ports.showo2.model import HeadConfig, Showo2Model
    from umm.ports.showo2.pipeline import showo_tokenizer
    from umm.tiny import train_tokenizer

    directory = Path(directory)
    tokenizer = train_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(directory / "llm")
    vocab = len(showo_tokenizer(tokenizer))  # Show-o2 adds [PAD], <image>, <|vid_start|>, <|vid_end|>
    llm = Qwen2Config(
        vocab_size=vocab + 60, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    llm.save_pretrained(directory / "llm")
    siglip = SiglipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                       "image_size": 56, "patch_size": 14},
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 32, "max_position_embeddings": 16},
    )
    siglip.save_pretrained(directory / "siglip")
    config = {
        "_class_name": "Showo2Qwen2_5", "llm_vocab_size": vocab, "llm_model_path": "Qwen/Qwen2.5-1.5B-Instruct",
        "load_from_showo": True, "image_latent_dim": 16, "image_latent_height": 4, "image_latent_width": 4,
        "video_latent_height": 4, "video_latent_width": 4, "patch_size": 2, "hidden_size": 64,
        "clip_latent_dim": 32, "num_diffusion_layers": 2, "add_time_embeds": True, "add_qk_norm": True,
        "clip_pretrained_model_path": "google/siglip-so400m-patch14-384",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "diffusion_head_config.json").write_text(json.dumps(TINY_HEAD, indent=2))
    torch.manual_seed(0)
    model = Showo2Model(config, llm, siglip.vision_config, HeadConfig.from_dict(TINY_HEAD))
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, directory / "pytorch_model.bin")  # the official file is a pickle
    convert_file(directory / "pytorch_model.bin")
    AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).save_pretrained(directory / "vae" / "vae")
