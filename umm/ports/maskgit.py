"""MaskGIT image-token sampling with classifier-free guidance, as Show-o and MMaDA run it.

Both models start from a grid of image tokens where some (all, for plain generation) are unknown, and
at every step: predict every position, draw a code per position, keep the codes that were given, then
re-mask the least confident draws so that a cosine-shrinking number of positions stays unknown. The
model-specific part (how the sequence is built and which logits are the image logits) is the
``logits_fn`` the caller passes; everything here is shared.

Facts both upstreams pin (see the golden READMEs): guidance is ``(1 + g)·cond − g·uncond``; the draw is
``torch.multinomial`` on the plain softmax (no temperature); the re-mask count is
``max(1, min(U − 1, floor(N · cos(π/2 · r))))`` with U the unknown count at the start of the step and N
all positions; the Gumbel temperature *compounds* (``τ_s = τ_{s−1}·(1 − r)``); exactly two random draws
per step (the multinomial, then a uniform for the Gumbel noise) from the one generator; and the result
is the last step's drawn codes (complete, although the last step still re-masks one position).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

UNKNOWN = -1  # code value of a position still to be generated


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """MUSE-style guidance both models use: ``(1 + g)·cond − g·uncond`` (not ``u + g(c − u)``)."""
    return (1 + scale) * cond - scale * uncond


def cosine_mask_ratio(ratio: float) -> torch.Tensor:
    """Fraction of positions left masked after a step, computed in float32 as upstream does."""
    return torch.cos(torch.tensor(ratio) * math.pi * 0.5)


def _log(t: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    return torch.log(t.clamp(min=eps))


@dataclass
class StepTrace:
    """What one step computed (for progress previews and parity tests)."""

    step: int
    logits: torch.Tensor  # (B, N, K) what logits_fn returned
    probs: torch.Tensor  # (B, N, K)
    draws: torch.Tensor  # (B, N) raw multinomial result
    sampled: torch.Tensor  # (B, N) draws with the known codes put back
    uniform: torch.Tensor  # (B, N) the uniform variates behind the Gumbel noise
    temperature: float
    mask_len: torch.Tensor  # (B, 1)
    confidence: torch.Tensor  # (B, N)
    remask: torch.Tensor  # (B, N) bool
    state: torch.Tensor  # (B, N) codes after the step, UNKNOWN where re-masked


def sample_codes(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    codes: torch.Tensor,
    *,
    steps: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[StepTrace], None] | None = None,
) -> torch.Tensor:
    """Run MaskGIT decoding and return the final ``(B, N)`` codes.

    ``codes`` holds known codes and :data:`UNKNOWN` elsewhere. ``logits_fn(state)`` returns the (guided)
    logits over the K codebook entries at the N image positions, ``(B, N, K)``, for the current state.
    ``on_step`` is called after every step (progress, cancel, tracing).
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    state = codes.clone()
    if not bool((state == UNKNOWN).any()):
        return state
    num_tokens = state.shape[1]
    sampled = state
    for step in range(steps):
        logits = logits_fn(state).float()
        probs = logits.softmax(dim=-1)
        batch, n, k = probs.shape
        draws = torch.multinomial(probs.reshape(-1, k), 1, generator=generator)[:, 0].view(batch, n)
        unknown = state == UNKNOWN
        sampled = torch.where(unknown, draws, state)
        ratio = (step + 1) / steps
        mask_ratio = cosine_mask_ratio(ratio)
        selected = torch.gather(probs, -1, sampled[..., None]).squeeze(-1)
        selected = torch.where(unknown, selected, torch.finfo(selected.dtype).max)
        mask_len = (num_tokens * mask_ratio).floor().unsqueeze(0).to(probs.device)
        mask_len = torch.max(
            torch.tensor([1], device=probs.device), torch.min(unknown.sum(dim=-1, keepdim=True) - 1, mask_len)
        )
        temperature = temperature * (1.0 - ratio)
        uniform = torch.zeros_like(selected).uniform_(0, 1, generator=generator)
        gumbel = -_log(-_log(uniform))
        confidence = _log(selected) + temperature * gumbel
        cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len.long())
        remask = confidence < cut_off
        state = torch.where(remask, UNKNOWN, sampled)
        if on_step is not None:
            on_step(StepTrace(
                step, logits, probs, draws, sampled, uniform, temperature, mask_len, confidence, remask, state
            ))
    return sampled
