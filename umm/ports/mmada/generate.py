"""MMaDA samplers: semi-autoregressive block remasking for text, guided MaskGIT for images.

Text (upstream ``generate.generate`` / ``MMadaModelLM.mmu_generate``, identical): append ``[MASK]``×G,
walk G/B blocks of B, ``s = steps / (G/B)`` steps each; step i of a block commits
``⌊M/s⌋ + (i < M mod s)`` positions (M = masks in the block at its start): the most confident masked
positions up to the block's end, by float64 softmax confidence of the argmax over the whole vocabulary
(Gumbel-perturbed ``exp(l) / (−log u)^T`` when T > 0; here with an explicit generator). Guidance c > 0
runs ``[x; x with the prompt masked]`` and uses ``l_u + (c + 1)(l_x − l_u)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from umm.ports.maskgit import UNKNOWN, StepTrace, guided_logits, sample_codes
from umm.ports.mmada.model import MmadaIds, forward


def transfer_counts(masked: int, steps: int) -> list[int]:
    """Tokens committed at each step of a block: ⌊M/s⌋, plus one for the first M mod s steps."""
    base, extra = divmod(masked, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


@dataclass
class TextStep:
    block: int
    step: int  # within the block
    logits: torch.Tensor  # (B, L, V) what the sampler used (guided when cfg > 0)
    committed: int
    x: torch.Tensor  # the sequence after the step
    last_in_block: bool


def check_schedule(gen_length: int, block_length: int) -> None:
    if block_length < 1 or gen_length % block_length:
        raise ValueError(f"the answer length ({gen_length}) must be a multiple of the block length ({block_length})")


def block_steps(gen_length: int, block_length: int, steps: int) -> list[int]:
    """Steps per block: ``steps / blocks`` each, as upstream (which requires divisibility). Other totals are
    spread as evenly as possible, earlier blocks first, with at least one step per block."""
    check_schedule(gen_length, block_length)
    blocks = gen_length // block_length
    base, extra = divmod(steps, blocks)
    return [max(1, base + (1 if b < extra else 0)) for b in range(blocks)]


def generate_text(
    model: torch.nn.Module,
    prompt: torch.Tensor,
    ids: MmadaIds,
    *,
    gen_length: int,
    block_length: int,
    steps: int,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    generator: torch.Generator | None = None,
    forward_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[TextStep]:
    """Yield after every step; the final ``x`` holds prompt + answer. ``prompt`` is (B, P)."""
    schedule = block_steps(gen_length, block_length, steps)
    run = forward_fn or (lambda x: forward(model, x))
    batch, length = prompt.shape
    x = torch.full((batch, length + gen_length), ids.mask, dtype=torch.long, device=prompt.device)
    x[:, :length] = prompt
    prompt_index = x != ids.mask
    for block, per_block in enumerate(schedule):
        start, end = length + block * block_length, length + (block + 1) * block_length
        counts = [transfer_counts(int(m), per_block) for m in (x[:, start:end] == ids.mask).sum(1)]
        for i in range(per_block):
            with torch.inference_mode():
                masked = x == ids.mask
                if cfg_scale > 0:
                    un_x = x.clone()
                    un_x[prompt_index] = ids.mask
                    cond, uncond = run(torch.cat([x, un_x])).chunk(2)
                    logits = uncond + (cfg_scale + 1) * (cond - uncond)
                else:
                    logits = run(x)
                x0 = _argmax(logits, temperature, generator)
                if remasking == "low_confidence":
                    p = torch.softmax(logits.to(torch.float64), dim=-1)
                    x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
                elif remasking == "random":
                    x0_p = torch.rand(x0.shape, generator=generator, device=generator.device if generator else None,
                                      dtype=torch.float64).to(x0.device)
                else:
                    raise ValueError(f"unknown remasking {remasking!r}")
                x0_p[:, end:] = -torch.inf
                x0 = torch.where(masked, x0, x)
                confidence = torch.where(masked, x0_p, -torch.inf)
                transfer = torch.zeros_like(x0, dtype=torch.bool)
                for row in range(batch):
                    transfer[row, torch.topk(confidence[row], k=counts[row][i]).indices] = True
                x = torch.where(transfer, x0, x)
            yield TextStep(block, i, logits, counts[0][i], x, i == per_block - 1)


def _argmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.to(torch.float64)
    device = generator.device if generator is not None else logits.device
    noise = torch.rand(logits.shape, generator=generator, device=device, dtype=torch.float64).to(logits.device)
    return (logits.exp() / (-torch.log(noise)) ** temperature).argmax(-1)


# -- prompts ---------------------------------------------------------------------------------------
THINK_PROMPT = (  # upstream app.py's "Thinking Mode": prepended to the user's text
    "You should first think about the reasoning process in the mind and then provide the user with the answer. "
    "The reasoning process is enclosed within <think> </think> tags, i.e. <think> reasoning process here </think> "
    "answer here\n"
)


def chat_text(turns: list[tuple[str, str]], bos_token: str) -> str:
    """LLaDA's chat template as upstream sets it: BOS, then per turn
    ``<|start_header_id|>role<|end_header_id|>\n{text.strip()}<|eot_id|>``, then the assistant header."""
    body = "".join(f"<|start_header_id|>{role}<|end_header_id|>\n{text.strip()}<|eot_id|>" for role, text in turns)
    return f"{bos_token}{body}<|start_header_id|>assistant<|end_header_id|>\n"


def mmu_prefix(codes: torch.Tensor, ids: MmadaIds) -> torch.Tensor:
    """``<|mmu|> <|soi|> image ids <|eoi|>`` for (N,) codes."""
    device = codes.device
    return torch.cat([
        torch.tensor([ids.reserved("mmu"), ids.reserved("soi")], device=device), codes + ids.offset,
        torch.tensor([ids.reserved("eoi")], device=device),
    ])


def t2i_prompt(text: list[int], image: torch.Tensor, ids: MmadaIds) -> tuple[torch.Tensor, torch.Tensor]:
    """``[iPAD]… <|t2i|> BOS text EOS <|soi|> image <|eoi|>`` and its 0/1 padding mask (upstream t2i_gen_prompt)."""
    text = list(text)
    if not text or text[0] != ids.bos:
        text = [ids.bos, *text]
    head = [ids.reserved("t2i"), *text, ids.eos]
    slots = ids.max_text_len + 1
    if len(head) <= slots:
        pads = slots - len(head)
        head, keep = [ids.reserved("ipad")] * pads + head, [0] * pads + [1] * len(head)
    else:
        head = [*head[: slots - 1], ids.eos]
        keep = [1] * slots
    device = image.device
    row = torch.cat([torch.tensor([*head, ids.reserved("soi")], device=device), image,
                     torch.tensor([ids.reserved("eoi")], device=device)])
    mask = torch.tensor(keep + [1] * (len(image) + 2), device=device)
    return row, mask


def t2i_generate(
    model: torch.nn.Module,
    ids: MmadaIds,
    texts: list[list[int]],
    num_tokens: int,
    *,
    steps: int,
    guidance_scale: float,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[StepTrace], None] | None = None,
    on_forward: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    device=None,
) -> torch.Tensor:
    """(B, N) codebook ids for ``texts`` (upstream ``t2i_generate``; the uncond prompt is the empty text)."""
    masked = torch.full((num_tokens,), ids.mask, device=device)
    cond = [t2i_prompt(t, masked, ids) for t in texts]
    uncond = [t2i_prompt([], masked, ids) for _ in texts]
    x = torch.stack([r for r, _ in cond])
    padding = torch.stack([m for _, m in cond])
    ux = torch.stack([r for r, _ in uncond])
    upadding = torch.stack([m for _, m in uncond])
    head = ids.max_text_len + 1
    columns = slice(ids.offset, ids.offset + ids.codebook_size)

    def logits_fn(state: torch.Tensor) -> torch.Tensor:
        x[:, -(num_tokens + 1):-1] = torch.where(state == UNKNOWN, ids.mask, state + ids.offset)
        if guidance_scale > 0:
            u = torch.cat([ux[:, :head], x[:, head:]], dim=1)
            batch, pad = torch.cat([x, u]), torch.cat([padding, upadding])
        else:
            batch, pad = x, padding
        if on_forward is not None:
            on_forward(batch, pad)
        logits = forward(model, batch, pad)[:, -(num_tokens + 1):-1, columns]
        if guidance_scale > 0:
            c, u = logits.chunk(2)
            return guided_logits(c, u, guidance_scale)
        return logits

    codes = torch.full((len(texts), num_tokens), UNKNOWN, dtype=torch.long, device=device)
    return sample_codes(logits_fn, codes, steps=steps, temperature=temperature, generator=generator, on_step=on_step)
