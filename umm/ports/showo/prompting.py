"""Show-o sequences and omni-attention masks (upstream ``training/prompting_utils.py``).

Text-to-image rows: ``[PAD]×p <|t2i|> BOS text EOS <|soi|> image <|eoi|>`` with the part before
``<|soi|>`` left-padded to ``max_text_len + 1`` slots. Understanding rows:
``<|mmu|> <|soi|> image <|eoi|> BOS question``. Masks are boolean, True = may attend (row = query).
"""

from __future__ import annotations

import torch

from umm.ports.showo.model import ShowoIds


def t2i_row(text_ids: list[int], image_ids: torch.Tensor, ids: ShowoIds) -> torch.Tensor:
    """One text-to-image sequence; ``image_ids`` are token ids (code + offset, or the mask id)."""
    text = list(text_ids)
    if not text or text[0] != ids.bos:
        text = [ids.bos, *text]
    head = [ids.t2i, *text, ids.eos]
    slots = ids.max_text_len + 1
    if len(head) <= slots:
        head = [ids.pad] * (slots - len(head)) + head
    else:
        head = [*head[: slots - 1], ids.eos]
    device = image_ids.device
    return torch.cat([
        torch.tensor(head, device=device), torch.tensor([ids.soi], device=device),
        image_ids.to(device), torch.tensor([ids.eoi], device=device),
    ])


def t2i_batch(texts: list[list[int]], image_ids: torch.Tensor, ids: ShowoIds) -> torch.Tensor:
    return torch.stack([t2i_row(t, image_ids[i], ids) for i, t in enumerate(texts)])


def t2i_attention(sequence: torch.Tensor, ids: ShowoIds) -> torch.Tensor:
    """Omni-attention for (B, L) text-to-image rows -> (B, 1, L, L) bool.

    Image rows (``<|soi|>`` … ``<|eoi|>``) see every non-padding column in both directions; text rows see
    earlier non-padding columns; padding rows see earlier padding (their outputs are unused).
    """
    batch, length = sequence.shape
    device = sequence.device
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    is_pad = sequence == ids.pad
    starts = (sequence == ids.soi).cumsum(1)
    ends = (sequence == ids.eoi).cumsum(1)
    in_image = (starts > ends) | (sequence == ids.soi) | (sequence == ids.eoi)
    allowed = causal[None].repeat(batch, 1, 1)
    positions = torch.arange(length, device=device)
    for b in range(batch):
        pads = positions[is_pad[b]]
        if len(pads):
            last = int(pads[-1])
            allowed[b, last + 1:, : last + 1] = False
        image_rows = in_image[b]
        allowed[b, image_rows] = ~is_pad[b][None, :].expand(int(image_rows.sum()), length)
    return allowed[:, None]


def mmu_row(image_ids: torch.Tensor | None, question_ids: list[int], ids: ShowoIds) -> torch.Tensor:
    """An understanding prompt; without an image it is plain ``BOS question`` text."""
    device = image_ids.device if image_ids is not None else None
    text = torch.tensor([ids.bos, *question_ids], device=device)
    if image_ids is None:
        return text
    prefix = torch.tensor([ids.mmu, ids.soi], device=device)
    return torch.cat([prefix, image_ids, torch.tensor([ids.eoi], device=device), text])


def mmu_attention(sequence: torch.Tensor, ids: ShowoIds) -> torch.Tensor:
    """Causal, plus every row sees the ``<|mmu|> <|soi|> image <|eoi|>`` prefix: (B, 1, L, L) bool."""
    batch, length = sequence.shape
    allowed = torch.ones(batch, 1, length, length, dtype=torch.bool, device=sequence.device).tril()
    eoi = (sequence[0] == ids.eoi).nonzero()
    if len(eoi):
        allowed[..., : int(eoi[0]) + 1] = True
    return allowed


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool mask -> additive float mask (0 / dtype min): a bool mask NaNs fully masked pad rows in SDPA."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
