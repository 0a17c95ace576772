"""BLIP3o-NEXT text-to-image, stage by stage, as upstream's ``generate_images`` runs it.

1. :func:`sample_image_tokens` — the Qwen3 LM samples after the prompt (:func:`prompt_text`) with
   transformers' own top-k / top-p warpers at temperature 1, from *all* ids (upstream restricts
   nothing), one ``multinomial`` per step from an explicit generator, stopping on the EOS ids.
2. :func:`conditioning` — one more mask-free, cache-free forward over prompt + new tokens; the
   final-norm hidden states from the scale token ``<S{scale}>`` on condition the diffusion model.
3. :func:`denoise` — connector on [zeros; h] (the unconditional branch is zeros *through* the
   connector), SANA at timestep 1000·σ with σ from a float64 linspace (no shift), CFG
   ``u + s·(c − u)`` and diffusers' flow-matching Euler step.
4. :func:`decode` — ``AutoencoderDC.decode(x / scaling_factor)``, then upstream's PIL rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

SYSTEM = "You are a helpful assistant."
USER = "Please generate image based on the following caption: {prompt}"


def prompt_text(tokenizer: Any, prompt: str, scale: int = 0) -> str:
    """Upstream's ``inference.py`` prompt: chat template, generation prompt, then ``<im_start><S{scale}>``."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER.format(prompt=prompt)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{text}<im_start><S{scale}>"


def warpers(top_k: int, top_p: float, temperature: float = 1.0) -> list[Any]:
    """transformers' logits warpers in ``generate``'s order; a disabled one is left out."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    out: list[Any] = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out


@torch.inference_mode()
def sample_image_tokens(
    lm: Any,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
    eos_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    temperature: float = 1.0,
    on_token: Callable[[int], None] | None = None,
    trace: dict[str, list[torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Sampled ids (N, L + n) and each row's new-token count (its EOS included, as ``generate`` keeps it).

    Temperature 0 decodes greedily. Rows share one prompt length (no padding), so no attention mask is
    needed; a finished row gets ``pad_token_id`` from then on, as ``generate`` does. KV-cached, one token
    per step.
    """
    from transformers import DynamicCache

    processors = warpers(top_k, top_p, temperature) if temperature > 0 else []
    eos = torch.tensor(list(eos_token_ids), device=input_ids.device, dtype=torch.long)
    rows = input_ids.shape[0]
    finished = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
    counts = [max_new_tokens] * rows
    cache = DynamicCache(config=lm.config)
    ids, step_input = input_ids, input_ids
    for step in range(max_new_tokens):
        out = lm(input_ids=step_input, past_key_values=cache, use_cache=True, logits_to_keep=1)
        scores = out.logits[:, -1, :].to(dtype=torch.float32)
        for process in processors:
            scores = process(ids, scores)
        probs = torch.softmax(scores, dim=-1)
        if trace is not None:
            trace.setdefault("step_logits", []).append(out.logits[:, -1, :].float())
            trace.setdefault("step_probs", []).append(probs)
        if temperature > 0:
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:  # greedy
            token = scores.argmax(dim=-1)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        ids = torch.cat([ids, token[:, None]], dim=1)
        newly = ~finished & torch.isin(token, eos) if eos.numel() else torch.zeros_like(finished)
        for row in torch.nonzero(newly).flatten().tolist():
            counts[row] = step + 1
        finished |= newly
        if on_token is not None:
            on_token(step + 1)
        if bool(finished.all()):
            break
        step_input = token[:, None]
    return ids, counts


@torch.inference_mode()
def conditioning(
    lm: Any, gen_ids: torch.Tensor, counts: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Final-norm hidden states (N, 1 + max n, D) from ``<S{scale}>`` on, and a key mask when rows differ.

    Upstream starts one after the first ``<im_start>`` in the sequence; the prompt ends with
    ``<im_start><S{scale}>``, so that is the prompt's last position — taken here from the lengths,
    which stays right even when a user's prompt text itself contains ``<im_start>``.
    Upstream's second forward has no mask and no cache; it is causal, so a finished row's padding
    cannot reach its own positions, and the mask only keeps SANA's cross-attention off that padding.
    """
    hidden = lm.model(input_ids=gen_ids, use_cache=False).last_hidden_state
    width = 1 + max(counts)
    start = gen_ids.shape[1] - max(counts) - 1  # the scale token: last prompt position
    cond = hidden[:, start : start + width]
    if len(set(counts)) == 1:
        return cond, None
    lengths = torch.tensor([1 + n for n in counts], device=cond.device)
    mask = (torch.arange(width, device=cond.device)[None] < lengths[:, None]).to(torch.long)
    return cond, mask


def flow_sigmas(steps: int) -> np.ndarray:
    """σ_i = 1 − i/N, computed as upstream does (numpy float64 linspace; the scheduler casts to float32)."""
    return np.linspace(1.0, 1 / steps, steps)


@torch.inference_mode()
def denoise(
    sana: Any,
    connector: torch.nn.Module,
    scheduler: Any,
    cond: torch.Tensor,
    latents: torch.Tensor,
    *,
    steps: int,
    guidance_scale: float,
    mask: torch.Tensor | None = None,
    on_step: Callable[[int], None] | None = None,
    trace: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Guided flow-matching Euler from noise (σ = 1) to latents (σ = 0); ``trace`` records each step."""
    guided = guidance_scale != 1.0  # at s = 1, u + s·(c − u) is c: the unconditional half is skipped
    states = torch.cat([torch.zeros_like(cond), cond]) if guided else cond
    ehs = connector(states.to(next(connector.parameters()).dtype))
    ehs_mask = None if mask is None else (torch.cat([mask, mask]) if guided else mask)
    scheduler.set_timesteps(steps, device=latents.device, sigmas=flow_sigmas(steps))
    if trace is not None:
        trace["encoder_hidden_states"] = ehs
        trace["timesteps"], trace["sigmas"] = scheduler.timesteps, scheduler.sigmas
        trace["init_latents"] = latents
    for i, t in enumerate(scheduler.timesteps):
        model_in = torch.cat([latents, latents]) if guided else latents
        model_in = model_in.to(ehs.dtype)
        timestep = t.expand(model_in.shape[0]).to(latents.device)
        out = sana(
            hidden_states=model_in, encoder_hidden_states=ehs, timestep=timestep,
            encoder_attention_mask=ehs_mask, return_dict=False,
        )[0]
        if guided:
            uncond, cond_pred = out.chunk(2)
            pred = uncond + guidance_scale * (cond_pred - uncond)
        else:
            uncond = cond_pred = pred = out
        if trace is not None:
            trace[f"sana_input_step{i}"], trace[f"sana_timestep_step{i}"] = latents, timestep
            trace[f"noise_pred_uncond_step{i}"], trace[f"noise_pred_cond_step{i}"] = uncond, cond_pred
            trace[f"noise_pred_step{i}"] = pred
        latents = scheduler.step(pred, t, latents, return_dict=False)[0]
        if trace is not None:
            trace[f"latents_step{i}"] = latents
        if on_step is not None:
            on_step(i + 1)
    return latents


@torch.inference_mode()
def decode(vae: Any, latents: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Raw decoder output (N, 3, H, W) and upstream's uint8 images (N, H, W, 3)."""
    config = vae.config
    z = latents.to(vae.dtype) / config.scaling_factor
    if getattr(config, "shift_factor", None) is not None:
        z = z + config.shift_factor
    decoded = vae.decode(z).sample
    image = (decoded / 2 + 0.5).clamp(0, 1)
    array = image.cpu().permute(0, 2, 3, 1).float().numpy()
    return decoded, (array * 255).round().astype("uint8")
