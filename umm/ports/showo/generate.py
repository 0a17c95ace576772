"""Show-o inference: guided MaskGIT text-to-image (and inpainting) and understanding with a KV cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from umm.ports.maskgit import UNKNOWN, StepTrace, guided_logits, sample_codes
from umm.ports.showo.model import ShowoIds
from umm.ports.showo.prompting import additive, mmu_attention, t2i_attention, t2i_batch
from umm.sampling import sample_tokens


def forward(model: torch.nn.Module, input_ids: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Full-sequence logits (fp32) under an explicit omni-attention mask; positions 0 … L−1 on every row."""
    dtype = next(model.parameters()).dtype
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
    out = model(input_ids=input_ids, attention_mask=additive(allowed, dtype), position_ids=positions, use_cache=False)
    return out.logits.float()


def image_ids(codes: torch.Tensor, ids: ShowoIds) -> torch.Tensor:
    """Codes (``UNKNOWN`` where masked) -> sequence ids."""
    return torch.where(codes == UNKNOWN, ids.mask, codes + ids.offset)


def t2i_generate(
    model: torch.nn.Module,
    ids: ShowoIds,
    texts: list[list[int]],
    codes: torch.Tensor,
    *,
    steps: int,
    guidance_scale: float,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[StepTrace], None] | None = None,
    on_forward: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Codes ``(B, N)`` for ``texts``; positions of ``codes`` that are not ``UNKNOWN`` are kept (inpainting).

    The mask is built once on ``[cond; uncond]`` rows (uncond = empty text, same image part) and reused,
    as upstream does; with guidance 0 only the conditional rows run.
    """
    device = codes.device
    n = ids.num_image_tokens
    cond = t2i_batch(texts, image_ids(codes, ids), ids).to(device)
    uncond = t2i_batch([[] for _ in texts], image_ids(codes, ids), ids).to(device)
    rows = torch.cat([cond, uncond]) if guidance_scale > 0 else cond
    allowed = t2i_attention(rows, ids)
    head = ids.max_text_len + 1
    columns = slice(ids.offset, ids.offset + ids.codebook_size)

    def logits_fn(state: torch.Tensor) -> torch.Tensor:
        image = image_ids(state, ids)
        cond[:, head + 1: head + 1 + n] = image
        batch = cond
        if guidance_scale > 0:
            uncond[:, head + 1: head + 1 + n] = image
            batch = torch.cat([cond, uncond])
        if on_forward is not None:
            on_forward(batch)
        logits = forward(model, batch, allowed)[:, -(n + 1):-1, columns]
        if guidance_scale > 0:
            c, u = logits.chunk(2)
            return guided_logits(c, u, guidance_scale)
        return logits

    return sample_codes(logits_fn, codes, steps=steps, temperature=temperature, generator=generator, on_step=on_step)


def mmu_tokens(
    model: torch.nn.Module,
    prompt: torch.Tensor,
    ids: ShowoIds,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(token id, last-position logits)`` one token at a time, stopping after EOS.

    Upstream recomputes the whole sequence per token (``use_cache=False`` here does the same); with the
    cache the prompt runs once under its omni-attention mask and each new token attends to everything
    before it — the same attention pattern, so the same tokens.
    """
    dtype = next(model.parameters()).dtype
    sequence = prompt[None] if prompt.dim() == 1 else prompt
    device = sequence.device
    past = None
    step_input = sequence
    for _ in range(max_new_tokens):
        with torch.inference_mode():  # per step: this generator yields between steps
            token, logits, past = _next_token(model, sequence, step_input, past, ids, dtype, use_cache,
                                              temperature, top_k, top_p, generator)
        step_input = token[:, None].to(device)
        sequence = torch.cat([sequence, step_input], dim=1)
        yield int(token[0]), logits[0]
        if int(token[0]) == ids.eos:
            return


def _next_token(model, sequence, step_input, past, ids, dtype, use_cache, temperature, top_k, top_p, generator):
    device = sequence.device
    length = sequence.shape[1]
    if use_cache and past is not None:
        positions = torch.tensor([[length - 1]], device=device)
        mask = torch.zeros(1, 1, 1, length, dtype=dtype, device=device)
        out = model(input_ids=step_input, attention_mask=mask, position_ids=positions, past_key_values=past,
                    use_cache=True)
    else:
        positions = torch.arange(length, device=device)[None]
        mask = additive(mmu_attention(sequence, ids), dtype)
        out = model(input_ids=sequence, attention_mask=mask, position_ids=positions, use_cache=use_cache)
    past = out.past_key_values if use_cache else None
    logits = out.logits[:, -1].float()
    token = sample_tokens(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return token, logits, past
