"""SD3-style VAE latents: ``(z - shift) * scale`` in, ``z / scale + shift`` out, and upstream's uint8 rule."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def pixels(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1]: the image resized to the output size as upstream's eval scripts do (bicubic)."""
    image = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return (2 * (array / 255) - 1)[None]


def posterior(vae, pixels: torch.Tensor):
    """The VAE's latent distribution of (1, 3, H, W) pixels (mean and std in ``.mean`` / ``.std``)."""
    return vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist


def to_latents(vae, mean: torch.Tensor, std: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """A posterior sample ``mean + std * eps``, shifted and scaled as the DiT expects."""
    z = mean + std * eps.to(mean.dtype)
    return (z - vae.config.shift_factor) * vae.config.scaling_factor


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Decoded pixels (N, 3, H, W), roughly in [-1, 1]."""
    z = latents.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
    return vae.decode(z, return_dict=False)[0]


def to_uint8(decoded: torch.Tensor) -> torch.Tensor:
    """``clamp(127.5 x + 128, 0, 255)`` cast by truncation, upstream's CLI/eval conversion."""
    return torch.clamp(127.5 * decoded.float() + 128.0, 0, 255).to(torch.uint8)


def to_images(uint8: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(x.permute(1, 2, 0).cpu().numpy(), "RGB") for x in uint8]
