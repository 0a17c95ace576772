"""The SD3 MMDiT forward with reference latents, over diffusers' stock ``SD3Transformer2DModel``.

DeepGen's transformer has exactly diffusers' parameters; what upstream adds is the edit path: each
reference latent is patch-embedded on its own (same centre-cropped sin-cos table, so a reference of
the target's size gets the target's positions) and appended after the target tokens. Joint
attention then runs over [target, refs, context], the dual layers' second attention over
[target, refs], and only the target tokens are projected out. Without references this is the stock
forward.
"""

from __future__ import annotations

import torch


def predict(
    transformer,
    latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    pooled_projections: torch.Tensor,
    timestep: torch.Tensor,
    refs: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Velocity (B, C, H, W) for ``latents`` (B, C, H, W); ``refs`` are (B, C, h, w) latents per reference."""
    patch = transformer.config.patch_size
    height, width = latents.shape[-2:]
    tokens = transformer.pos_embed(latents).contiguous()
    target = tokens.shape[1]
    if refs:
        tokens = torch.cat([tokens, *(transformer.pos_embed(ref.to(latents.dtype)) for ref in refs)], dim=1)
    temb = transformer.time_text_embed(timestep, pooled_projections)
    context = transformer.context_embedder(encoder_hidden_states)
    for block in transformer.transformer_blocks:
        context, tokens = block(hidden_states=tokens, encoder_hidden_states=context, temb=temb)
    tokens = transformer.norm_out(tokens[:, :target], temb)
    tokens = transformer.proj_out(tokens)
    h, w = height // patch, width // patch
    out = tokens.reshape(tokens.shape[0], h, w, patch, patch, transformer.out_channels)
    out = torch.einsum("nhwpqc->nchpwq", out)
    return out.reshape(tokens.shape[0], transformer.out_channels, h * patch, w * patch)
