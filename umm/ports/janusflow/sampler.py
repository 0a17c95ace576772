"""JanusFlow's rectified-flow sampler with classifier-free guidance (upstream ``demo/app_janusflow.py``).

Sequence per step: ``[prompt (P rows), t_emb (1 row), z tokens (N rows)]`` for 2B rows, the
conditional ones first. The prompt is the tokenized text without its trailing image tag (t_emb takes
that slot). Unconditional rows see only BOS of the prompt (mask 0 at columns 1..P-1) but keep the
positions 0..P+N of the full sequence, as upstream passes no position ids. Time is ``k / S * 1000``;
``v = w * v_c - (w - 1) * v_u`` and ``z += v / S``.

The prompt rows are causal and depend on neither z nor t, so their keys / values are computed once
and reused every step (``use_cache=True``); upstream recomputes the whole sequence each step (its
cache trimming loop runs over an emptied list). Both give the same result to float rounding;
``use_cache=False`` keeps upstream's recompute, for comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from umm.ports.janusflow.model import JanusFlowModel


def guidance_rows(input_ids: torch.Tensor, num_images: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows (2B, L) and the attention mask (2B, L - 1) of the prompt part, tag column dropped.

    The unconditional rows keep BOS and pad the rest (as upstream; those columns are masked anyway).
    """
    ids = input_ids.reshape(-1)
    cond = ids.expand(num_images, -1)
    uncond = cond.clone()
    uncond[:, 1:] = pad_id
    rows = torch.cat([cond, uncond])
    prompt_len = rows.shape[1] - 1
    mask = torch.ones((2 * num_images, prompt_len), dtype=torch.long, device=ids.device)
    mask[num_images:, 1:prompt_len] = 0
    return rows, mask


@torch.inference_mode()
def sample(
    model: JanusFlowModel,
    input_ids: torch.Tensor,
    latents: torch.Tensor,
    *,
    steps: int,
    cfg_weight: float,
    pad_id: int,
    use_cache: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    trace: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``steps`` Euler steps from noise ``latents`` (B, c, H, W) at t=0 to data at t=1000.

    ``input_ids`` is the tokenized prompt ending in the image tag. ``trace`` (a dict) receives the
    intermediate tensors of every step under the golden data's names.
    """
    from transformers import DynamicCache

    llm = model.language_model.model
    batch = latents.shape[0]
    rows, prompt_mask = guidance_rows(input_ids.to(latents.device), batch, pad_id)
    prompt = llm.get_input_embeddings()(rows)[:, :-1]  # drop the tag: t_emb takes its place
    prompt_len = prompt.shape[1]
    cache = None
    if use_cache:
        cache = DynamicCache(config=model.language_model.config)
        llm(inputs_embeds=prompt, attention_mask=prompt_mask, past_key_values=cache, use_cache=True)
    z = latents
    dt = torch.full_like(z, 1.0 / steps)
    for step in range(steps):
        t = torch.full((2 * batch,), step / steps * 1000.0, device=z.device).to(z.dtype)
        z_tokens, t_emb, hs = model.encode_latents(torch.cat([z, z]), t)
        image_rows = torch.cat([t_emb[:, None], z_tokens], dim=1)
        if step == 0:  # the token grid is the encoder's output size
            grid = tuple(hs[-1].shape[-2:])
            num_tokens = grid[0] * grid[1]
            mask = torch.cat([prompt_mask, prompt_mask.new_ones((2 * batch, 1 + num_tokens))], dim=1)
            positions = torch.arange(prompt_len, prompt_len + 1 + num_tokens, device=z.device)[None]
            if trace is not None:
                trace["attention_mask"] = mask
        if cache is not None:
            hidden = llm(
                inputs_embeds=image_rows, attention_mask=mask, position_ids=positions,
                past_key_values=cache, use_cache=True,
            ).last_hidden_state
            cache.crop(-(1 + num_tokens))  # keep only the prompt for the next step
        else:
            embeds = torch.cat([prompt, image_rows], dim=1)
            hidden = llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
            if trace is not None and step == 0:
                trace["inputs_embeds_step0"] = embeds
        hidden = hidden[:, -num_tokens:]
        v = model.decode_hidden(hidden, grid, hs, t_emb)
        v_cond, v_uncond = v.chunk(2)
        velocity = cfg_weight * v_cond - (cfg_weight - 1.0) * v_uncond
        if trace is not None:
            trace.update({
                f"step{step}_latents": z, f"step{step}_t_emb": t_emb, f"step{step}_z_tokens": z_tokens,
                f"step{step}_llm_image_hidden": hidden, f"step{step}_v_cond": v_cond,
                f"step{step}_v_uncond": v_uncond, f"step{step}_velocity": velocity,
            })
        z = z + dt * velocity
        if on_step is not None:
            on_step(step + 1, steps)
    return z

