"""Show-o2's sequences, loading, understanding decode (with a KV cache) and flow-matching sampler.

Everything follows upstream's demos (``inference_mmu.py``, ``inference_t2i.py``): the sequence layouts
(no ``<|im_end|>`` after the question; the understanding block starts one after the time token, as the
demo does), times 0 = noise → 1 = data, the shifted grid ``t = τ / (τ + s − s·τ)`` with S points = S − 1
Euler evaluations, and guidance ``v_u + g·(v_c − v_u)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from umm.ports.showo2.model import HeadConfig, Showo2Model, additive, omni_mask

SYSTEM = "system\nYou are a helpful assistant.<|im_end|>"
ROLE_USER = "\n<|im_start|>user\n"
ROLE_ASSISTANT = "\n<|im_start|>assistant\n"
TIME, IMAGE = -1, -2  # sequence markers: the time token and an image token


# -- tokenizer and ids ------------------------------------------------------------------------
def showo_tokenizer(tokenizer):
    """The Qwen2.5 tokenizer with Show-o2's additions (``get_text_tokenizer``), in upstream's order."""
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    for token in ("<image>", "<|vid_start|>", "<|vid_end|>"):
        tokenizer.add_tokens(token)
    return tokenizer


@dataclass(frozen=True)
class TokenIds:
    bos: int
    eos: int
    boi: int
    eoi: int
    img_pad: int
    pad: int

    @classmethod
    def of(cls, tokenizer) -> TokenIds:
        vocab = tokenizer.get_vocab()
        return cls(
            bos=vocab["<|im_start|>"], eos=tokenizer.eos_token_id, boi=vocab["<|vision_start|>"],
            eoi=vocab["<|vision_end|>"], img_pad=vocab["<|image_pad|>"], pad=vocab["[PAD]"],
        )


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# -- sequences --------------------------------------------------------------------------------
def understanding_sequence(
    tokenizer, ids: TokenIds, turns: list[tuple[str, str]], num_image_tokens: int | None, image_turn: int = 0
) -> tuple[list[int], tuple[int, int] | None]:
    """Ids (TIME / IMAGE markers for the image slots) and the image block of a chat.

    ``turns`` are (role, text); the image, when given, sits at the start of user turn ``image_turn``, as
    in the demo: ``[bos] sys role_a [boi] TIME IMAGE×N [eoi] question role_b``. Earlier assistant turns
    end with ``<|im_end|>``; the last user turn has none (the demo's layout). The block is (A + 2, N + 1):
    the image tokens plus ``<|vision_end|>``, the time token outside it (the demo's offset).
    """
    seq = [ids.bos, *encode(tokenizer, SYSTEM)]
    block = None
    for i, (role, text) in enumerate(turns):
        if role == "user":
            seq += encode(tokenizer, ROLE_USER)
            if i == image_turn and num_image_tokens:
                block = (len(seq) + 2, num_image_tokens + 1)
                seq += [ids.boi, TIME, *[IMAGE] * num_image_tokens, ids.eoi]
            seq += encode(tokenizer, text)
        else:
            seq += encode(tokenizer, ROLE_ASSISTANT) + encode(tokenizer, text) + [ids.eos]
    return seq + encode(tokenizer, ROLE_ASSISTANT), block


def generation_sequence(
    tokenizer, ids: TokenIds, prompt: str, num_image_tokens: int, max_text_len: int
) -> tuple[list[int], tuple[int, int]]:
    """``prepare_gen_input``: [bos] prompt [boi] [img_pad]×(N+1) [eoi, eos] [pad]×(max_text_len − n)."""
    text = encode(tokenizer, prompt)[:max_text_len] if prompt else []
    seq = [ids.bos, *text, ids.boi, *[ids.img_pad] * (num_image_tokens + 1), ids.eoi, ids.eos]
    return seq + [ids.pad] * (max_text_len - len(text)), (len(text) + 2, num_image_tokens + 1)


def batch_masks(length: int, blocks: list[tuple[int, int]], device) -> torch.Tensor:
    """(B, L, L) bool omni masks; a row without a block is plain causal."""
    tensor = torch.tensor([b or (0, 0) for b in blocks], device=device)
    return omni_mask(length, tensor)


# -- loading ----------------------------------------------------------------------------------
def load_model(
    model_dir: Path, weights: Path, llm_config, vision_config, head: HeadConfig | None = None,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", config_path: Path | None = None,
) -> Showo2Model:
    """The official checkpoint (its ``config.json`` + safetensors state dict), names unchanged, strict."""
    from accelerate import init_empty_weights
    from safetensors import safe_open

    config = json.loads(Path(config_path or Path(model_dir) / "config.json").read_text())
    with init_empty_weights(include_buffers=False):
        model = Showo2Model(config, llm_config, vision_config, head)
    state = {}
    with safe_open(str(weights), framework="pt", device=str(device)) as file:
        for name in file.keys():  # one tensor at a time: the peak is the model in `dtype` plus one tensor
            state[name] = file.get_tensor(name).to(dtype)
    if model.showo.config.tie_word_embeddings and "showo.lm_head.weight" not in state:
        state["showo.lm_head.weight"] = state["showo.model.embed_tokens.weight"]
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"Show-o2 weights do not match the architecture: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]} ({len(missing)} / {len(unexpected)} in all)")
    model.load_state_dict(state, strict=True, assign=True)
    if model.showo.config.tie_word_embeddings:
        model.showo.lm_head.weight = model.showo.model.embed_tokens.weight
    return model.to(device).eval()


# -- understanding ----------------------------------------------------------------------------
def understanding_embeds(
    model: Showo2Model, seq: list[int], block: tuple[int, int] | None, latents: torch.Tensor | None
) -> torch.Tensor:
    """(1, L, D) LLM input: token embeddings, the time token at t = 1, the fused image tokens."""
    device = model.showo.model.embed_tokens.weight.device
    ids = torch.tensor([seq], device=device)
    if block is None:
        return model.showo.model.embed_tokens(ids)
    image = model.image_embeds(latents)
    _, token = model.time_embeds(torch.ones(1, device=device))
    offset = block[0] - 1  # the time token sits one before the demo's block
    return model.sequence_embeds(ids, torch.tensor([[offset, block[1]]]), token, image)


def decode(
    model: Showo2Model,
    embeds: torch.Tensor,
    block: tuple[int, int] | None,
    *,
    max_new_tokens: int,
    eos: int,
    pick: Callable[[torch.Tensor], torch.Tensor],
    use_cache: bool = True,
    on_logits: Callable[[torch.Tensor], None] | None = None,
) -> Iterator[int]:
    """Token ids one by one until ``eos`` (yielded) or ``max_new_tokens``.

    Upstream re-runs the whole sequence per token; new rows are plain causal, so a KV cache gives the
    same logits (``use_cache=False`` is the upstream way, kept for the equivalence test).
    """
    from transformers import DynamicCache

    length = embeds.shape[1]
    mask = batch_masks(length, [block], embeds.device)
    dtype = embeds.dtype
    cache = DynamicCache() if use_cache else None
    hidden = model.llm(embeds, additive(mask, dtype), cache)
    for step in range(max_new_tokens):
        logits = model.logits(hidden[:, -1])
        if on_logits is not None:
            on_logits(logits)
        token = int(pick(logits[0]))
        yield token
        if token == eos or step == max_new_tokens - 1:
            return
        new = model.showo.model.embed_tokens(torch.tensor([[token]], device=embeds.device))
        if use_cache:
            row = torch.zeros(1, 1, 1, length + step + 1, dtype=dtype, device=embeds.device)
            hidden = model.llm(new, row, cache, start=length + step)
        else:
            embeds = torch.cat([embeds, new], dim=1)
            grown = torch.ones(length + step + 1, length + step + 1, dtype=torch.bool, device=embeds.device).tril()
            grown[: mask.shape[1], : mask.shape[2]] = mask[0]
            hidden = model.llm(embeds, additive(grown[None], dtype))


# -- text-to-image ----------------------------------------------------------------------------
def time_grid(steps: int, shift: float) -> torch.Tensor:
    """S grid points from 0 (noise) to 1 (data): t = τ / (τ + s − s·τ) on τ = linspace(0, 1, S)."""
    tau = torch.linspace(0, 1, steps)
    return tau / (tau + shift - shift * tau)


@dataclass
class GenerationBatch:
    """Token ids (B, L), image blocks (B, 2) and additive masks (B, 1, L, L) of cond rows (then uncond)."""

    ids: torch.Tensor
    blocks: torch.Tensor
    mask: torch.Tensor
    guided: bool


def generation_batch(
    tokenizer, ids: TokenIds, prompts: list[str], num_image_tokens: int, max_text_len: int, guided: bool,
    dtype: torch.dtype, device, trim: bool = True,
) -> GenerationBatch:
    """[cond rows ; uncond rows] (uncond = empty prompt) with their blocks and omni masks.

    ``trim`` drops the trailing positions after the longest row's block (closing tokens and pads):
    under the causal mask nothing before them sees them, so the velocities are unchanged.
    """
    rows = [generation_sequence(tokenizer, ids, p, num_image_tokens, max_text_len) for p in prompts]
    if guided:
        rows += [generation_sequence(tokenizer, ids, "", num_image_tokens, max_text_len)] * len(prompts)
    length = len(rows[0][0])
    if trim:
        length = max(offset + size for _, (offset, size) in rows)
    tokens = torch.tensor([seq[:length] for seq, _ in rows], device=device)
    blocks = torch.tensor([block for _, block in rows], device=device)
    return GenerationBatch(tokens, blocks, additive(omni_mask(length, blocks), dtype), guided)


def guided_velocity(model: Showo2Model, batch: GenerationBatch, x: torch.Tensor, t: float, scale: float,
                    trace: dict | None = None) -> torch.Tensor:
    """The velocity of x (B, C, H, W) at time t, guided when the batch holds uncond rows."""
    xs = torch.cat([x, x]) if batch.guided else x
    times = torch.full((xs.shape[0],), float(t), device=x.device)
    v = model.forward_velocity(batch.ids, batch.blocks, batch.mask, xs, times).float()
    if not batch.guided:
        return v
    cond, uncond = v.chunk(2)
    if trace is not None:
        trace.update(cond=cond, uncond=uncond)
    return uncond + scale * (cond - uncond)


def sample(
    model: Showo2Model, batch: GenerationBatch, noise: torch.Tensor, *, steps: int, guidance_scale: float,
    shift: float = 3.0, on_step: Callable[[int, int], None] | None = None,
    trace: list[dict] | None = None,
) -> torch.Tensor:
    """Euler from the (bf16-rounded, as upstream) noise at t = 0 to the data latents at t = 1 (fp32)."""
    grid = time_grid(steps, shift).tolist()
    x = noise.to(torch.bfloat16).float()
    for k in range(steps - 1):
        step_trace: dict[str, Any] | None = {} if trace is not None else None
        v = guided_velocity(model, batch, x, grid[k], guidance_scale, step_trace)
        if trace is not None:
            trace.append({**step_trace, "x": x, "v": v})
        x = x + (grid[k + 1] - grid[k]) * v
        if on_step is not None:
            on_step(k + 1, steps - 1)
    return x
