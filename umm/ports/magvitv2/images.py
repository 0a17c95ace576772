"""PIL images <-> MagViTv2 pixels, as Show-o and MMaDA prepare them (their ``image_transform``).

Upstream resizes the shorter side to the resolution (bicubic), centre-crops a square and maps to
[-1, 1]; decoded pixels are clamped from [-1, 1] to 0..255. Written with PIL (torchvision is not used).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def square_resize(image: Image.Image, resolution: int, resample: int = Image.Resampling.BICUBIC) -> Image.Image:
    """Shorter side to ``resolution`` (long side ``int(res · long / short)``), then a centred square crop."""
    width, height = image.size
    if width <= height:
        size = (resolution, int(resolution * height / width))
    else:
        size = (int(resolution * width / height), resolution)
    image = image.resize(size, resample)
    left = round((size[0] - resolution) / 2.0)
    top = round((size[1] - resolution) / 2.0)
    return image.crop((left, top, left + resolution, top + resolution))


def to_pixels(image: Image.Image, resolution: int) -> torch.Tensor:
    """(1, 3, res, res) float32 in [-1, 1]."""
    array = np.asarray(square_resize(image.convert("RGB"), resolution), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None] * 2 - 1


def to_mask(mask: Image.Image, resolution: int, grid: int) -> torch.Tensor:
    """A painted mask (white = change) -> (grid², ) bool over the token grid, as upstream's inpainting script.

    Upstream resizes and crops the mask like the image, downsamples it bicubically to the token grid and
    thresholds at 0.5.
    """
    array = np.asarray(square_resize(mask.convert("L"), resolution), dtype=np.float32) / 255.0
    small = torch.nn.functional.interpolate(torch.from_numpy(array)[None, None], size=grid, mode="bicubic")
    return (small >= 0.5).flatten()


def to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> RGB PIL images."""
    array = ((pixels.float().clamp(-1, 1) + 1) / 2 * 255).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
    return [Image.fromarray(a) for a in array]
