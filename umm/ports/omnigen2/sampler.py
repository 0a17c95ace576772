"""OmniGen2's Euler sampler with text and image classifier-free guidance.

Time runs from 0 (noise) to 1 (data), the opposite of diffusers' flow-match scheduler, so this is a
plain loop rather than a diffusers scheduler. The guidance rules follow upstream exactly:

* text scale > 1 and image scale > 1 (and reference images given): three passes,
  ``v_u + s_i (v_ref - v_u) + s_t (v_c - v_ref)``;
* only text scale > 1: ``v_u + s_t (v_c - v_u)``, where the unconditional pass has no references;
* otherwise one conditional pass (an image scale alone is ignored, as upstream does).

Scales apply while ``i / steps`` lies in ``cfg_range``; outside it they are 1 and the extra passes
are skipped. The passes run as one batched forward by default: the transformer takes per-sample
reference lists and pads text/sequence lengths with key masks, so stacking them only costs memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from umm.ports.omnigen2.transformer import OmniGen2Transformer2DModel, RefImages

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Conditioning:
    """Text features (B, L, D) with right-padded masks (B, L); negatives may have batch 1 or B.

    ``ref_latents`` is, per sample, None or a list of (C, h, w) reference latents (VAE space).
    """

    text_hidden_states: torch.Tensor
    text_attention_mask: torch.Tensor
    negative_text_hidden_states: torch.Tensor | None = None
    negative_text_attention_mask: torch.Tensor | None = None
    ref_latents: RefImages = None

    @property
    def has_refs(self) -> bool:
        return any(self.ref_latents or [])


def time_grid(
    num_steps: int, num_tokens: int | None = None, dynamic_time_shift: bool = True
) -> torch.Tensor:
    """The ``num_steps`` float32 times t_i in [0, 1) (append 1.0 for the end of the last step).

    With the dynamic shift, t -> t / (m - m t + t) where ``m = sqrt(num_tokens) / 40`` and
    num_tokens = latent H * W: larger images spend more steps near the noise end.
    """
    # float32 grid, shift evaluated in float64, result float32: the rounding the golden trace has.
    t = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)[:-1].float().double()
    if dynamic_time_shift and num_tokens is not None:
        m = math.sqrt(num_tokens) / 40
        t = t / (m - m * t + t)
    return t.to(torch.float32)


def _pad_text(
    h: torch.Tensor, mask: torch.Tensor, length: int, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast a batch-1 prompt to ``batch`` and right-pad it to ``length`` tokens (mask False)."""
    h, mask = h.expand(batch, -1, -1), mask.to(torch.bool).expand(batch, -1)
    extra = length - h.shape[1]
    if extra:
        h = torch.cat([h, h.new_zeros(batch, extra, h.shape[2])], dim=1)
        mask = torch.cat([mask, mask.new_zeros(batch, extra)], dim=1)
    return h, mask


def guided_velocity(
    transformer: OmniGen2Transformer2DModel,
    latents: torch.Tensor,
    t: torch.Tensor | float,
    cond: Conditioning,
    text_scale: float = 1.0,
    image_scale: float = 1.0,
    batch_passes: bool = True,
) -> torch.Tensor:
    """Combined velocity at time ``t`` for (B, C, H, W) latents, running only the passes needed."""
    batch = latents.shape[0]
    refs: RefImages = cond.ref_latents or [None] * batch
    text_guided = text_scale > 1.0
    image_guided = text_guided and image_scale > 1.0 and cond.has_refs
    # (text features, mask, reference lists) of each pass: cond, [ref-only], [uncond]
    passes = [(cond.text_hidden_states, cond.text_attention_mask, list(refs))]
    if text_guided:
        if (
            cond.negative_text_hidden_states is None
            or cond.negative_text_attention_mask is None
        ):
            raise ValueError(
                "text guidance needs negative_text_hidden_states and negative_text_attention_mask"
            )
        negative = (cond.negative_text_hidden_states, cond.negative_text_attention_mask)
        if image_guided:
            passes.append((*negative, list(refs)))
        passes.append((*negative, [None] * batch))

    dtype = transformer.dtype
    x = latents.to(dtype)
    t_vec = (
        torch.as_tensor(t, device=latents.device).reshape(-1).expand(batch).to(dtype)
    )
    if batch_passes and len(passes) > 1:
        length = max(h.shape[1] for h, _, _ in passes)
        padded = [_pad_text(h, m, length, batch) for h, m, _ in passes]
        v = transformer(
            x.repeat(len(passes), 1, 1, 1),
            t_vec.repeat(len(passes)),
            torch.cat([h for h, _ in padded]).to(dtype),
            torch.cat([m for _, m in padded]),
            [r for _, _, pass_refs in passes for r in pass_refs],
        )
        outs = list(v.chunk(len(passes)))
    else:
        outs = [
            transformer(
                x,
                t_vec,
                h.expand(batch, -1, -1).to(dtype),
                m.expand(batch, -1),
                pass_refs,
            )
            for h, m, pass_refs in passes
        ]

    if image_guided:
        v_c, v_ref, v_u = outs
        return v_u + image_scale * (v_ref - v_u) + text_scale * (v_c - v_ref)
    if text_guided:
        v_c, v_u = outs
        return v_u + text_scale * (v_c - v_u)
    return outs[0]


@torch.no_grad()
def sample(
    transformer: OmniGen2Transformer2DModel,
    cond: Conditioning,
    *,
    latents: torch.Tensor | None = None,
    latent_shape: Sequence[int] | None = None,
    num_steps: int = 50,
    text_guidance_scale: float = 4.0,
    image_guidance_scale: float = 1.0,
    cfg_range: tuple[float, float] = (0.0, 1.0),
    dynamic_time_shift: bool = True,
    generator: torch.Generator | None = None,
    on_step: StepCallback | None = None,
    batch_passes: bool = True,
) -> torch.Tensor:
    """Integrate from noise (t=0) to data (t=1) with Euler steps; returns the final latents.

    Args:
        latents: initial noise (B, C, H, W); drawn from ``generator`` with ``latent_shape`` when None.
        cfg_range: guidance applies at step i while ``cfg_range[0] <= i / num_steps <= cfg_range[1]``.
        on_step: called after every step as ``on_step(done, num_steps)`` with done = 1..num_steps;
            raising from it cancels the run.
        batch_passes: run the guidance passes as one forward (faster, more memory) or one by one.
    """
    device = transformer.device
    if latents is None:
        if latent_shape is None:
            raise ValueError("pass latents or latent_shape")
        noise_device = generator.device if generator is not None else device
        latents = torch.randn(
            tuple(latent_shape),
            generator=generator,
            device=noise_device,
            dtype=torch.float32,
        )
    latents = latents.to(device=device, dtype=transformer.dtype)
    times = time_grid(
        num_steps, latents.shape[-2] * latents.shape[-1], dynamic_time_shift
    ).to(device)
    times = torch.cat([times, times.new_ones(1)])

    for i in range(num_steps):
        in_range = cfg_range[0] <= i / num_steps <= cfg_range[1]
        v = guided_velocity(
            transformer,
            latents,
            times[i],
            cond,
            text_scale=text_guidance_scale if in_range else 1.0,
            image_scale=image_guidance_scale if in_range else 1.0,
            batch_passes=batch_passes,
        )
        # Euler step in float32, stored back in the model dtype (as upstream does).
        latents = (latents.float() + (times[i + 1] - times[i]) * v.float()).to(v.dtype)
        if on_step is not None:
            on_step(i + 1, num_steps)
    return latents
