"""DeepGen's sampler: the diffusers SD3 pipeline's flow-matching Euler loop with classifier-free guidance.

Timesteps and sigmas come from the checkpoint's ``FlowMatchEulerDiscreteScheduler`` (shift 3, so the
end point is shifted twice, as in diffusers); the DiT sees the timestep on the 0-1000 scale, the
batch is [uncond; cond], ``g = u + s (c - u)`` and ``x <- x + (sigma_next - sigma) g`` in float32,
the latents then kept in the model dtype as the pipeline's ``scheduler.step`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from umm.ports.deepgen.transformer import predict


@dataclass
class Guidance:
    """DiT conditioning of one request: cond and uncond rows (each (1, T, J) / (1, P))."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    negative_pooled: torch.Tensor


def schedule(scheduler_config: dict, steps: int, image_seq_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(timesteps (N,), sigmas (N + 1,)) exactly as the SD3 pipeline sets them (``mu`` if dynamic)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    kwargs = {}
    if scheduler.config.get("use_dynamic_shifting", False):
        base_len = scheduler.config.get("base_image_seq_len", 256)
        max_len = scheduler.config.get("max_image_seq_len", 4096)
        base_shift = scheduler.config.get("base_shift", 0.5)
        max_shift = scheduler.config.get("max_shift", 1.16)
        slope = (max_shift - base_shift) / (max_len - base_len)
        kwargs["mu"] = image_seq_len * slope + base_shift - slope * base_len
    scheduler.set_timesteps(steps, device=device, **kwargs)
    return scheduler.timesteps, scheduler.sigmas


@torch.no_grad()
def sample(
    transformer,
    latents: torch.Tensor,
    guidance: Guidance,
    timesteps: torch.Tensor,
    sigmas: torch.Tensor,
    guidance_scale: float,
    refs: list[torch.Tensor] | None = None,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> torch.Tensor:
    """Denoise ``latents`` (N, C, h, w); ``refs`` are (1, C, h', w') reference latents shared by all N.

    ``on_step(done, total, trace)`` runs after every step (progress, cancel, and the tensors for tests).
    """
    n = latents.shape[0]
    cfg = guidance_scale > 1.0
    if cfg:
        negative, positive = guidance.negative_prompt_embeds, guidance.prompt_embeds
        context = torch.cat([negative.expand(n, -1, -1), positive.expand(n, -1, -1)])
        pooled = torch.cat([guidance.negative_pooled.expand(n, -1), guidance.pooled.expand(n, -1)])
    else:
        context, pooled = guidance.prompt_embeds.expand(n, -1, -1), guidance.pooled.expand(n, -1)
    dtype = transformer.dtype
    context, pooled = context.to(dtype), pooled.to(dtype)
    batch = context.shape[0]
    refs = [ref.to(dtype).expand(batch, -1, -1, -1) for ref in refs or []]
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        model_input = torch.cat([latents, latents]) if cfg else latents
        timestep = t.expand(batch)
        out = predict(transformer, model_input.to(dtype), context, pooled, timestep, refs)
        if cfg:
            uncond, cond = out.chunk(2)
            velocity = uncond + guidance_scale * (cond - uncond)
        else:
            uncond = cond = velocity = out
        step = latents.float() + (sigmas[i + 1] - sigmas[i]) * velocity.float()
        latents = step.to(velocity.dtype)
        if on_step is not None:
            on_step(i + 1, total, {"timestep": timestep, "uncond": uncond, "cond": cond,
                                   "velocity": velocity, "latents": latents})
    return latents
