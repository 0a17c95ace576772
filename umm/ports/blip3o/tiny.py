"""A few-MB BLIP3o-NEXT checkpoint in the official layout, plus its SANA repo, for tests and the demo.

Main folder (as ``BLIP3o/BLIP3o-NEXT-SFT-3B``): ``config.json`` (model type ``blip3o_qwen_inference``
with the BLIP3o token ids), ``generation_config.json``, two safetensors shards + index holding
``model.*`` (Qwen3), ``model.diffusion_connector.*``, ``model.sana.*``, ``model.sana_vae.*`` and a few
``model.vision_tower.*`` keys (TA-Tok stand-ins, to prove they are skipped), and a tokenizer with the
ChatML template and the tokens upstream's ``initialize_vision_tokenizer`` adds, in its order.
Component folder (as ``Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers``): ``transformer/``,
``vae/`` (configs and their own weights) and ``scheduler/`` (the SANA repos' DPMSolver config).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

NUM_SCALE_TOKENS = 3
NUM_IMAGE_TOKENS = 64
CAPTION_CHANNELS = 24
SANA_REPO = "Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers"
# The chat template upstream's training code sets (blip3o/data/dataset.py): one-line ChatML.
CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

SANA_CONFIG = {  # SANA-1.5's switches (qk norm across heads, mlp 2.5) at toy widths
    "attention_bias": False, "attention_head_dim": 8, "caption_channels": CAPTION_CHANNELS,
    "cross_attention_dim": 32, "cross_attention_head_dim": 16, "dropout": 0.0, "guidance_embeds": False,
    "in_channels": 4, "interpolation_scale": None, "mlp_ratio": 2.5, "norm_elementwise_affine": False,
    "norm_eps": 1e-6, "num_attention_heads": 4, "num_cross_attention_heads": 2, "num_layers": 2,
    "out_channels": 4, "patch_size": 1, "qk_norm": "rms_norm_across_heads", "sample_size": 32,
}
VAE_CONFIG = {  # dc-ae-f32c32's block kinds (ResBlock, EfficientViT, Conv down, interpolate up), spatial factor 2
    "attention_head_dim": 8, "decoder_act_fns": "silu", "decoder_block_out_channels": [16, 32],
    "decoder_block_types": ["ResBlock", "EfficientViTBlock"], "decoder_layers_per_block": [1, 1],
    "decoder_norm_types": "rms_norm", "decoder_qkv_multiscales": [[], [5]], "downsample_block_type": "Conv",
    "encoder_block_out_channels": [16, 32], "encoder_block_types": ["ResBlock", "EfficientViTBlock"],
    "encoder_layers_per_block": [1, 1], "encoder_qkv_multiscales": [[], [5]], "in_channels": 3,
    "latent_channels": 4, "scaling_factor": 0.41407, "upsample_block_type": "interpolate",
}
SCHEDULER_CONFIG = {  # what the SANA diffusers repos ship; FlowMatchEuler reads only num_train_timesteps
    "_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++", "beta_end": 0.02,
    "beta_schedule": "linear", "beta_start": 0.0001, "flow_shift": 3.0, "final_sigmas_type": "zero",
    "lower_order_final": True, "num_train_timesteps": 1000, "prediction_type": "flow_prediction",
    "solver_order": 2, "solver_type": "midpoint", "steps_offset": 0, "timestep_spacing": "linspace",
    "use_beta_sigmas": False, "use_exponential_sigmas": False, "use_flow_sigmas": True,
    "use_karras_sigmas": False, "use_lu_lambdas": False,
}


def _tokenizer():
    from tokenizers import AddedToken

    from umm.tiny import train_tokenizer

    tokenizer = train_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_tokens([AddedToken("<im_start>", special=True), AddedToken("<im_end>", special=True)],
                         special_tokens=True)
    tokenizer.add_tokens([f"<S{i}>" for i in range(NUM_SCALE_TOKENS)])
    tokenizer.add_tokens([f"<I{i}>" for i in range(NUM_IMAGE_TOKENS)])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _init(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Random weights that keep activations O(1), so the twin's outputs are not all alike."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("bias"):
                param.copy_(0.02 * noise)
            elif param.ndim == 1 or "norm" in name:
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_(noise / max(1, param[0].numel()) ** 0.5)


def build(directory: Path, component: str) -> None:
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from huggingface_hub import save_torch_state_dict
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    from umm.ports.blip3o.checkpoint import build_connector

    directory = Path(directory)
    generator = torch.Generator().manual_seed(0)
    tokenizer = _tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    blip3o = {
        "image_start_tag_id": ids("<im_start>"), "image_end_tag_id": ids("<im_end>"),
        "scale_start_token_id": ids("<S0>"), "scale_end_token_id": ids(f"<S{NUM_SCALE_TOKENS - 1}>"),
        "image_start_token_id": ids("<I0>"), "image_end_token_id": ids(f"<I{NUM_IMAGE_TOKENS - 1}>"),
        "num_image_tokens": NUM_IMAGE_TOKENS, "num_scale_tokens": NUM_SCALE_TOKENS,
        "num_new_tokens": NUM_IMAGE_TOKENS, "mm_use_im_start_end": True, "mm_vision_tower": "ta_tok.pth",
        "diffusion_name_or_path": SANA_REPO,
    }
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True,
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
    )
    lm = Qwen3ForCausalLM(config).eval()
    _init(lm, generator)
    connector = build_connector({
        "0.weight": torch.zeros(CAPTION_CHANNELS, config.hidden_size), "0.bias": torch.zeros(CAPTION_CHANNELS),
        "2.weight": torch.zeros(CAPTION_CHANNELS, CAPTION_CHANNELS), "2.bias": torch.zeros(CAPTION_CHANNELS),
        "3.weight": torch.zeros(CAPTION_CHANNELS),
    })
    _init(connector, generator)
    sana, vae = SanaTransformer2DModel(**SANA_CONFIG), AutoencoderDC(**VAE_CONFIG)
    _init(sana, generator)
    _init(vae, generator)

    state = {k: v for k, v in lm.state_dict().items() if k != "lm_head.weight"}  # tied: not on disk
    for prefix, module in (("diffusion_connector", connector), ("sana", sana), ("sana_vae", vae)):
        state.update({f"model.{prefix}.{k}": v for k, v in module.state_dict().items()})
    state["model.vision_tower.vision_tower.encoder.proj.weight"] = torch.randn(8, 3, generator=generator)
    state["model.vision_tower.vision_tower.bottleneck.regularizer.embedding.weight"] = torch.randn(
        NUM_IMAGE_TOKENS, 8, generator=generator
    )
    directory.mkdir(parents=True, exist_ok=True)
    total = sum(v.numel() * v.element_size() for v in state.values())
    save_torch_state_dict(  # sharded, as the hub checkpoint is
        {k: v.contiguous() for k, v in state.items()}, directory, max_shard_size=total // 2 + 1
    )
    config_dict = {**config.to_dict(), **blip3o, "architectures": ["blip3oQwenForInferenceLM"],
                   "model_type": "blip3o_qwen_inference"}
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True))
    GenerationConfig(
        bos_token_id=ids("<|endoftext|>"), eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"), do_sample=True, temperature=0.6, top_k=20, top_p=0.95,
    ).save_pretrained(directory)
    tokenizer.save_pretrained(directory)

    # The SANA repo: its own (here: other random) weights, which the checkpoint's override.
    sana_dir = directory / component
    other = torch.Generator().manual_seed(1)
    parts = ((SanaTransformer2DModel(**SANA_CONFIG), "transformer"), (AutoencoderDC(**VAE_CONFIG), "vae"))
    for module, folder in parts:
        _init(module, other)
        module.save_pretrained(sana_dir / folder)
    (sana_dir / "scheduler").mkdir(parents=True, exist_ok=True)
    (sana_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
