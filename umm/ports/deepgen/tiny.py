"""A few-MB DeepGen checkpoint in the official diffusers layout, for tests and the offline demo.

Sizes differ from the real model on purpose (8 VLM layers, so two stacked layers instead of six;
4 meta-queries): the port reads every size from the files, and the twin checks that it does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
VLM_LAYERS = 8
NUM_QUERIES = 4


def write_tiny(directory: Path) -> None:
    from diffusers import SD3Transformer2DModel
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from umm.ports.deepgen.conditioning import DEFAULT_TEMPLATE, LAYER_STRIDE
    from umm.ports.deepgen.connector import DeepGenConnector, save_connector
    from umm.tiny import save_tiny_vae, train_tokenizer

    directory = Path(directory)
    torch.manual_seed(0)
    tokenizer = train_tokenizer(
        QWEN_SPECIALS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tokenizer.save_pretrained(directory / "tokenizer")
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIALS}

    hidden = 16
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 16,
            "num_hidden_layers": VLM_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 1024,
            "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": hidden,
            "fullatt_block_indexes": [0], "window_size": 56,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    vlm = Qwen2_5_VLForConditionalGeneration(config).eval()
    vlm.generation_config = GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                                             pad_token_id=ids["<|endoftext|>"])
    vlm.save_pretrained(directory / "vlm")

    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8,
        pos_embed_max_size=96, dual_attention_layers=(0,), qk_norm="rms_norm",
    )
    transformer.save_pretrained(directory / "transformer")
    selected = len(range(VLM_LAYERS - 1, 0, -LAYER_STRIDE))
    connector = DeepGenConnector(
        llm_hidden_size=hidden, num_selected_layers=selected, hidden_size=16, intermediate_size=24,
        num_hidden_layers=1, num_attention_heads=2, pooled_projection_dim=8, joint_attention_dim=16,
        num_queries=NUM_QUERIES,
    )
    with torch.no_grad():  # upstream zero-initialises projector_2/3; random here so the twin's output varies
        connector.meta_queries.normal_(std=hidden**-0.5)
    save_connector(connector, directory / "connector", {"llm_hidden_size": hidden, "num_selected_layers": selected})
    save_tiny_vae(directory / "vae", scaling_factor=1.5305, shift_factor=0.0609)
    (directory / "scheduler").mkdir(parents=True, exist_ok=True)
    (directory / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0})
    )
    (directory / "prompt_template.json").write_text(json.dumps(DEFAULT_TEMPLATE, indent=2))
    (directory / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": ["deepgen_pipeline", "DeepGenPipeline"],
                "transformer": ["diffusers", "SD3Transformer2DModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            },
            indent=2,
        )
    )
