"""The FLUX.1 autoencoder of ``ae.safetensors`` as diffusers' ``AutoencoderKL``.

The file keeps the original BFL/LDM names (``encoder.down.0.block.0.norm1`` ...); diffusers' own
single-file converter maps them to ``AutoencoderKL`` names at load time. The architecture (channels,
levels, res blocks, latent channels) is read from the tensor shapes; scale and shift are FLUX's
constants, which upstream's ``load_ae`` hard-codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from umm.ports.bagel.model import header_shapes

SCALE_FACTOR = 0.3611  # modeling/autoencoder.py load_ae (FLUX.1)
SHIFT_FACTOR = 0.1159


def ae_config(shapes: dict[str, list[int]]) -> dict[str, Any]:
    """The ``AutoencoderKL`` config of an original AE state dict, from its tensor shapes."""
    levels = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down.")})
    blocks = {int(k.split(".")[4]) for k in shapes if k.startswith("encoder.down.0.block.")}
    channels = [shapes[f"encoder.down.{i}.block.0.conv2.weight"][0] for i in levels]
    return {
        "in_channels": shapes["encoder.conv_in.weight"][1],
        "out_channels": shapes["decoder.conv_out.weight"][0],
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "block_out_channels": channels,
        "layers_per_block": len(blocks),
        "latent_channels": shapes["decoder.conv_in.weight"][1],
        "norm_num_groups": 32,
        "scaling_factor": SCALE_FACTOR,
        "shift_factor": SHIFT_FACTOR,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": True,
        "force_upcast": False,
    }


def _widen_stem(vae, base: int) -> None:
    """Give the encoder the original stem when its base width differs from the first level's.

    The original encoder's conv_in has ``ch`` channels and its first res block maps ``ch`` to
    ``ch * ch_mult[0]``; diffusers assumes ``ch_mult[0] == 1`` (true for FLUX, not for every AE).
    """
    from diffusers.models.resnet import ResnetBlock2D

    first = vae.encoder.down_blocks[0].resnets[0]
    if vae.encoder.conv_in.out_channels == base:
        return
    vae.encoder.conv_in = torch.nn.Conv2d(vae.encoder.conv_in.in_channels, base, kernel_size=3, padding=1)
    vae.encoder.down_blocks[0].resnets[0] = ResnetBlock2D(
        in_channels=base, out_channels=first.out_channels, temb_channels=None, eps=first.norm1.eps,
        groups=first.norm1.num_groups,
    )


def load_autoencoder(path: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """``AutoencoderKL`` with the weights of an original ``ae.safetensors`` (converted, then assigned)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    shapes = header_shapes(path)
    config = ae_config(shapes)
    with init_empty_weights():
        vae = AutoencoderKL(**config)
        _widen_stem(vae, shapes["encoder.conv_in.weight"][0])
    state = convert_ldm_vae_checkpoint(load_file(str(path), device=str(device)), config)
    state = {k: v.to(dtype) for k, v in state.items()}
    vae.load_state_dict(state, strict=True, assign=True)
    return vae.to(device).eval()


def encode_moments(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Encoder output (B, 2C, h, w): [mean | logvar] along channels, as upstream's encoder returns it."""
    return vae.encoder(pixels.to(vae.dtype))


def sample_latent(vae, moments: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Upstream ``encode``: a posterior sample, then scale * (z - shift)."""
    mean, logvar = moments.float().chunk(2, dim=1)
    z = mean + torch.exp(0.5 * logvar) * noise.to(mean)
    return SCALE_FACTOR * (z - SHIFT_FACTOR)


def decode_latent(vae, latent: torch.Tensor) -> torch.Tensor:
    """Upstream ``decode``: decoder(z / scale + shift), not clamped."""
    z = latent / SCALE_FACTOR + SHIFT_FACTOR
    return vae.decoder(z.to(vae.dtype))
