"""Lookup-free quantizer (LFQ) of MagViTv2: every latent channel is one bit.

There is no learned codebook. A latent vector of ``d`` channels is quantised to the sign of each
channel (``> 0`` gives +1, anything else -1), so the implicit codebook is the ``2**d`` corners of the
hypercube ``{-1, +1}^d``. A token id is the integer whose binary digits are those signs, channel 0
being the most significant bit.

The official checkpoint still stores two buffers, ``embedding`` (the ``2**d`` corners, row ``i`` the
corner of id ``i``) and ``power_vals`` (bit weights ``2**(d-1) ... 1``). They are derived data, but we
keep them as persistent buffers and actually use them (ids = bits · power_vals, latent = embedding[id])
so the checkpoint loads strictly and whatever it stores is what drives the mapping.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def corner_table(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(embedding, power_vals)``: the ±1 corner of every id and the MSB-first bit weights."""
    power_vals = 2 ** torch.arange(dim - 1, -1, -1, dtype=torch.long)
    bits = (torch.arange(2**dim, dtype=torch.long)[:, None] & power_vals) > 0
    return bits.float() * 2 - 1, power_vals


def square_grid(num_tokens: int) -> tuple[int, int]:
    """Grid of a flat token sequence when the caller gives none; only square grids can be guessed."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{num_tokens} tokens do not form a square grid; pass grid_hw=(h, w)")
    return side, side


class LookupFreeQuantizer(nn.Module):
    """Sign quantiser over the channel axis of a ``(B, d, h, w)`` latent; ``2**d`` token ids."""

    def __init__(self, dim: int = 13) -> None:
        super().__init__()
        self.dim = dim
        embedding, power_vals = corner_table(dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("power_vals", power_vals)

    @property
    def codebook_size(self) -> int:
        return 2**self.dim

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``(B, d, h, w)`` features; return the ±1 latent and ``(B, h*w)`` ids (row-major).

        The latent uses the straight-through estimator (value of the sign, gradient of the identity),
        so the tokenizer stays trainable through this call. It is written as ``signs + (f - f.detach())``
        so the values are exactly ±1 (``f + (signs - f).detach()`` can land an ulp off).
        """
        if features.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} latent channels, got {features.shape[1]}")
        positive = features > 0
        signs = torch.where(positive, 1.0, -1.0).to(features.dtype)
        quantized = signs + (features - features.detach())
        weights = self.power_vals.to(features.device).view(1, -1, 1, 1)
        indices = (positive.long() * weights).sum(dim=1)
        return quantized, indices.flatten(1)

    def indices_to_latent(self, indices: torch.Tensor, grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``(B, h*w)`` ids (row-major) -> ``(B, d, h, w)`` ±1 latent, via the ``embedding`` table."""
        if indices.dim() != 2:
            raise ValueError(f"indices must be (batch, tokens), got shape {tuple(indices.shape)}")
        h, w = grid_hw if grid_hw is not None else square_grid(indices.shape[1])
        if h * w != indices.shape[1]:
            raise ValueError(f"grid {h}x{w} does not hold {indices.shape[1]} tokens")
        rows = self.embedding[indices.to(self.embedding.device)]  # (B, h*w, d)
        return rows.view(indices.shape[0], h, w, self.dim).permute(0, 3, 1, 2).contiguous()
