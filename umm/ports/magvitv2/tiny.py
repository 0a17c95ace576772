"""A tiny random MagViTv2 written like the ``showlab/magvitv2`` repo, for the tiny twins of its users."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from umm.ports.magvitv2.model import MagViTv2

# Five levels keep the real downsampling factor (16); 6 latent channels give a 64-entry codebook.
TINY = {
    "ch": 32,
    "encoder_ch_mult": [1, 1, 1, 1, 1],
    "encoder_num_res_blocks": [1, 1, 1, 1, 1],
    "decoder_ch_mult": [1, 1, 1, 1, 1],
    "decoder_num_res_blocks": [1, 1, 1, 1, 1],
    "resolution": 64,
    "z_channels": 6,
}


def save_tiny_magvitv2(directory: Path, seed: int = 0) -> MagViTv2:
    """``config.json`` (upstream's own holds only metadata; this one names the tiny sizes) and
    ``pytorch_model.safetensors`` in the official names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = MagViTv2(**TINY).eval()
    config = {"_class_name": "MAGVITv2", **TINY}
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / "pytorch_model.safetensors", metadata={"format": "pt"})
    return model
