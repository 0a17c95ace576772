"""Next-scale sampling with classifier-free guidance (upstream ``autoregressive_infer_cfg``).

Sequence per row: the text prefix (BOS, left-padded to 128 tokens, then ``<img>``), then the image
tokens scale by scale. Row L0 + m of the logits (L0 = prefix length − 1) predicts image token m, so the
logits of scale k are read at the positions whose *inputs* are scale k's: the ``<img>`` token for the
first scale, the upsampled features of the earlier scales for the others. Guidance ramps with the
scale, ``t_k = cfg·k/(n−1)``; top-k / top-p filter in place; one multinomial draw per (scale, loop) from
an explicit CPU generator; optional refinement loops re-run a scale with its own codes included.

``use_cache=True`` runs each scale once over its own tokens against a KV cache of the earlier ones
(the block-causal mask makes that exact); ``False`` recomputes the whole sequence per scale, as
upstream does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from umm.ports.tokenflow.llm import ScaleKVCache, TokenFlowForCausalLM
from umm.ports.tokenflow.vq import TokenFlowPixelDecoder, next_input

# run_llava_samples.py: multi_step_infer_strategy (loop -> per-loop top-k and top-p)
LOOP_STRATEGIES = {
    1: {"top_k": (600,), "top_p": (0.6,)},
    2: {"top_k": (1200, 1), "top_p": (0.8, 0.0)},
    3: {"top_k": (1200, 100, 1), "top_p": (0.8, 0.8, 0.0)},
}
MAX_TEXT_TOKENS = 128  # run_llava_samples.py: crop_and_encode_text_and_img(..., max_text_token_num=128)


@dataclass(frozen=True)
class TokenLayout:
    """Where image tokens sit in the vocabulary and how a prompt is laid out."""

    image_token_start: int  # id of <vq_token_0>; the vocabulary ends at the last image token
    pad_token_id: int
    bos_token_id: int
    img_ids: tuple[int, ...]  # encode("<img>", add_special_tokens=False)
    max_text_tokens: int = MAX_TEXT_TOKENS


def prefix_ids(text_ids: Sequence[int], layout: TokenLayout) -> list[int]:
    """Upstream ``crop_and_encode_text_and_img``: BOS first, cut or left-pad to 128, then ``<img>``."""
    ids = list(text_ids)
    if not ids or ids[0] != layout.bos_token_id:
        ids = [layout.bos_token_id, *ids]
    n = layout.max_text_tokens
    ids = ids[:n] if len(ids) > n else [layout.pad_token_id] * (n - len(ids)) + ids
    return ids + list(layout.img_ids)


def offsets(scales: Sequence[int]) -> list[int]:
    out, total = [], 0
    for s in scales:
        out.append(total)
        total += s * s
    return out


# -- inputs -------------------------------------------------------------------------------------
def prefix_embeds(lm: TokenFlowForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """Text positions: token + level-0 embedding; the last (``<img>``) also gets ``pos_1LC[0]``."""
    m = lm.model
    embeds = m.embed_tokens(ids) + m.lvl_embed.weight[0]
    last = embeds[:, -1:] + m.pos_1LC[:1]
    return torch.cat([embeds[:, :-1], last], dim=1)


def scale_embeds(lm: TokenFlowForCausalLM, features: torch.Tensor, k: int) -> torch.Tensor:
    """Inputs of scale k ≥ 1: projected (B, s², C) features + ``lvl_embed[k+1]`` + their ``pos_1LC`` rows."""
    m = lm.model
    start = offsets(lm.scales)[k]
    projected = m.mm_projector(features.to(lm.dtype))
    return projected + m.lvl_embed.weight[k + 1] + m.pos_1LC[start:start + features.shape[1]]


def sequence_embeds(lm: TokenFlowForCausalLM, ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """The whole input up to some scale: prefix, then image features x_1 … (B, Σ s², C) as given."""
    embeds = prefix_embeds(lm, ids)
    if features is None or features.shape[1] == 0:
        return embeds
    parts, start = [embeds], 0
    for k, s in enumerate(lm.scales[1:], start=1):
        if start >= features.shape[1]:
            break
        parts.append(scale_embeds(lm, features[:, start:start + s * s], k))
        start += s * s
    return torch.cat(parts, dim=1)


# -- masks --------------------------------------------------------------------------------------
def allowed_mask(ids: torch.Tensor, scales: Sequence[int], length: int, pad_token_id: int) -> torch.Tensor:
    """(R, 1, L, L) bool, True = attend: causal, pad keys off, then block-causal by scale from L0 on."""
    rows, prefix = ids.shape
    l0 = prefix - 1
    device = ids.device
    q = torch.arange(length, device=device)
    allowed = (q[None, :] <= q[:, None])[None].expand(rows, -1, -1).clone()
    key_pad = torch.zeros(rows, length, dtype=torch.bool, device=device)
    key_pad[:, :prefix] = ids == pad_token_id
    allowed &= ~key_pad[:, None, :]
    n_image = length - l0
    level = torch.cat([torch.full((s * s,), i, device=device) for i, s in enumerate(scales)])[:n_image]
    allowed[:, l0:, l0:] = level[None, :] <= level[:, None]
    return allowed[:, None]


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 / finfo.min, never a boolean SDPA mask: fully masked (pad) rows then attend uniformly, not NaN."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


# -- sampling -----------------------------------------------------------------------------------
def guide(cond: torch.Tensor, uncond: torch.Tensor, k: int, n_scales: int, cfg: float, start: int, end: int):
    """``(1+t)·cond − t·uncond`` with ``t = cfg·k/(n−1)``; every column outside the image ids [start, end) −inf.

    Upstream masks only the columns below ``start``: the same whenever the vocabulary ends at the last
    image token, as the official one does.
    """
    t = cfg * (k / (n_scales - 1)) if n_scales > 1 else 0.0
    guided = (1 + t) * cond - t * uncond
    guided[..., :start] = -torch.inf
    guided[..., end:] = -torch.inf
    return guided


def filter_top_k_top_p_(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Upstream ``sample_with_top_k_top_p_`` filtering, in place (ties at the k-th value are kept)."""
    if top_k > 0:
        k = min(int(top_k), logits.shape[-1])
        kth = logits.topk(k, largest=True, sorted=False, dim=-1)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < kth, -torch.inf)
    if top_p > 0:
        sorted_logits, order = logits.sort(dim=-1, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False
        logits.masked_fill_(remove.scatter(order.ndim - 1, order, remove), -torch.inf)
    return logits


def draw(filtered: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One id per (sample, position), drawn on the CPU generator so seeds mean the same on every device."""
    batch, length, vocab = filtered.shape
    probs = filtered.softmax(dim=-1).view(-1, vocab).float().cpu()
    ids = torch.multinomial(probs, num_samples=1, replacement=True, generator=generator)
    return ids.view(batch, length).to(filtered.device)


Trace = Callable[[int, int, dict], torch.Tensor | None]


@torch.inference_mode()
def generate_codes(
    lm: TokenFlowForCausalLM,
    vq: TokenFlowPixelDecoder,
    rows: torch.Tensor,
    layout: TokenLayout,
    *,
    cfg: float,
    top_k: Sequence[int],
    top_p: Sequence[float],
    generator: torch.Generator,
    use_cache: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    trace: Trace | None = None,
) -> torch.Tensor:
    """Codes (B, Σs²) for prefix ``rows`` = [cond_0 … cond_{B−1}, uncond_0 … uncond_{B−1}] (2B, P).

    ``on_step(k, n)`` runs before scale k (progress and the cancel point); ``trace(k, j,
    tensors)`` sees each step's logits and ids and may return ids to use instead (teacher forcing).
    """
    scales = lm.scales
    n = len(scales)
    if len(top_k) != len(top_p) or not top_k:
        raise ValueError("top_k and top_p need one value per loop")
    batch = rows.shape[0] // 2
    cache = ScaleKVCache() if use_cache else None
    image_token_end = layout.image_token_start + vq.sizes["codebook_size"]
    maps: list[torch.Tensor] = []  # e_k per scale drawn so far
    flat: list[torch.Tensor] = []  # LLM input features x_k (B, s², C), k ≥ 1
    x = None
    codes = []
    for k, s in enumerate(scales):
        if on_step is not None:
            on_step(k, n)
        if k > 0:
            x = next_input(x, maps[k - 1], s)
            flat.append(x.flatten(2).transpose(1, 2))
        loops = 1 if k == 0 else len(top_k)
        for j in range(loops):
            if j == 0:
                features = flat[k - 1] if k > 0 else None
            else:  # refinement: scale k's slot holds x_k + e_k (its own codes just drawn), not upsampled
                features = (x + maps[k]).flatten(2).transpose(1, 2)
            logits = _scale_logits(lm, rows, layout.pad_token_id, flat, features, k, j, cache)
            cond, uncond = logits[:batch], logits[batch:]
            guided = guide(cond, uncond, k, n, cfg, layout.image_token_start, image_token_end)
            record = {"cond": cond, "uncond": uncond, "guided": guided.clone()} if trace else None
            filtered = filter_top_k_top_p_(guided, top_k[j], top_p[j])
            ids = draw(filtered, generator)
            if trace is not None:
                record.update(kept=filtered > -torch.inf, ids=ids)
                forced = trace(k, j, record)
                ids = ids if forced is None else forced.to(ids.device)
            e = vq.scale_maps(ids - layout.image_token_start, (s,))[0]
            if j == 0:
                maps.append(e)
                codes.append(ids)
            else:
                maps[k], codes[k] = e, ids
    return torch.cat(codes, dim=1) - layout.image_token_start


def _scale_logits(lm, rows, pad_id, flat, features, k, j, cache) -> torch.Tensor:
    """Logits (2B, s_k², V) of scale k, with ``features`` (B, s_k², C) in scale k's input slot."""
    s, dtype, l0, starts = lm.scales[k], lm.dtype, rows.shape[1] - 1, offsets(lm.scales)
    both = None if features is None else torch.cat([features, features])  # cond and uncond rows share codes
    if cache is None:  # upstream: the whole sequence up to scale k, every forward
        earlier = [torch.cat([f, f]) for f in flat[: k - 1]] if k > 0 else []
        feats = torch.cat([*earlier, both], dim=1) if both is not None else None
        embeds = sequence_embeds(lm, rows, feats)
        mask = additive(allowed_mask(rows, lm.scales, embeds.shape[1], pad_id), dtype)
        first = l0 + starts[k]
        return lm(embeds.to(dtype), 0, mask, rows=slice(first, first + s * s))
    if k == 0:
        embeds = prefix_embeds(lm, rows)
        mask = additive(allowed_mask(rows, lm.scales, embeds.shape[1], pad_id), dtype)
        return lm(embeds.to(dtype), 0, mask, cache, rows=slice(-1, None))
    start = l0 + starts[k]
    cache.upto, cache.commit = (start, False) if j > 0 else (None, True)
    keys = start + s * s
    allowed = torch.ones(rows.shape[0], 1, s * s, keys, dtype=torch.bool, device=rows.device)
    allowed[:, 0, :, : rows.shape[1]] &= (rows != pad_id)[:, None, :]
    try:
        return lm(scale_embeds(lm, both, k).to(dtype), start, additive(allowed, dtype), cache)
    finally:
        cache.upto, cache.commit = None, True

