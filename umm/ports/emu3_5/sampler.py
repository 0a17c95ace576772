"""Emu3.5's token sampler: text, forced image headers and rows, and log-softmax CFG on visual tokens.

This is upstream's HF path (``generate`` plus the
``UnbatchedClassifierFreeGuidanceLogitsForVisualTokenWithDifferentialTopKProcessor``, unconditional
type ``no_text``) written as one loop with two KV caches, so that every token is one
``control.step`` (progress + cancel) and one ``torch.multinomial`` draw from the request's generator
-- forced tokens included, exactly as upstream draws them. The rules (golden README section 4.4):

* mode 0, text: raw logits with every visual id masked; text (temperature, top-k, top-p);
* mode 1, image header after ``<|image start|>``: the ``h*w`` digits of a known size, or, in "auto"
  size, digits 1-9 / 0-9 / ``*`` position by position (two-digit h and w); then ``<|image token|>``;
* mode 2, a visual token: ``log_softmax(u) + s * (log_softmax(c) - log_softmax(u))`` with every
  non-visual id masked, where ``u`` comes from the unconditional context, which sees the image
  tokens but never the generated text;
* mode 3 / 4, the forced end of a row / of the image.

Modes 1-4 use the image settings. The unconditional branch runs at every image step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

TEXT, HEADER, VISUAL, ROW_END, IMAGE_END = range(5)


@dataclass(frozen=True)
class Settings:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


@dataclass
class Trace:
    """Per-step records for parity tests (only kept when asked for)."""

    modes: list[int] = field(default_factory=list)
    cond_logits: list[torch.Tensor] = field(default_factory=list)
    uncond_logits: list[torch.Tensor | None] = field(default_factory=list)
    uncond_used: list[bool] = field(default_factory=list)
    uncond_len: list[int] = field(default_factory=list)
    scores: list[torch.Tensor] = field(default_factory=list)
    uncond_ids: list[int] = field(default_factory=list)


def filter_scores(x: torch.Tensor, s: Settings) -> torch.Tensor:
    """Temperature, then top-k (ties kept), then top-p keeping the token that crosses p."""
    if s.temperature not in (0.0, 1.0):
        x = x / s.temperature
    if 0 < s.top_k < x.shape[-1]:
        kth = torch.topk(x, s.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if s.top_p < 1.0:
        ordered, order = torch.sort(x, descending=True)
        cum = ordered.softmax(-1).cumsum(-1)
        drop = cum > s.top_p
        drop[1:] = drop[:-1].clone()
        drop[0] = False
        x = x.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return x


class _Branch:
    """One token context with its KV cache; ``feed`` appends ids and returns the last logits (fp32)."""

    def __init__(self, model, ids: list[int], device: torch.device, static_len: int | None = None) -> None:
        from transformers import DynamicCache, StaticCache

        self.model, self.device = model, device
        self.ids: list[int] = []
        self.pending: list[int] = list(ids)
        # A static cache is allocated once for the whole run (no per-token re-allocation on GPUs).
        self.cache = (
            StaticCache(config=model.config, max_cache_len=static_len)
            if static_len
            else DynamicCache(config=model.config)
        )

    @torch.inference_mode()
    def feed(self, ids: list[int] = ()) -> torch.Tensor:
        self.pending.extend(ids)
        chunk = torch.tensor([self.pending], device=self.device)
        position = torch.arange(len(self.ids), len(self.ids) + len(self.pending), device=self.device)
        out = self.model(
            input_ids=chunk, past_key_values=self.cache, use_cache=True, logits_to_keep=1, cache_position=position
        )
        self.ids.extend(self.pending)
        self.pending = []
        return out.logits[0, -1].float()


class _Pair:
    """Both branches as one batch-2 forward (row 0 conditional, row 1 unconditional).

    The two contexts differ in length, so the shorter is left-padded; an explicit additive 4-D mask hides
    the padding (a padded query row attends to itself only, so no row is fully masked) and each row
    keeps its own positions. One forward reads the weights once for both branches: on a GPU, where a
    34B decode step is bound by weight reads, that is about half the time of two batch-1 forwards.
    """

    def __init__(self, model, device: torch.device, static_len: int | None = None) -> None:
        from transformers import DynamicCache, StaticCache

        self.model, self.device, self.static_len = model, device, static_len
        self.cache = (
            StaticCache(config=model.config, max_cache_len=static_len) if static_len
            else DynamicCache(config=model.config)
        )
        self.dtype = next(model.parameters()).dtype
        self.pad = torch.zeros(2, dtype=torch.long)
        self.lengths = [0, 0]
        self.width = 0  # padded length so far

    def _mask(self, q: int) -> torch.Tensor:
        kv = self.static_len or self.width
        low = torch.finfo(self.dtype).min
        mask = torch.full((2, 1, q, kv), low, dtype=self.dtype, device=self.device)
        start = self.width - q
        for r in range(2):
            for i in range(q):
                pos = start + i
                if pos >= self.pad[r]:
                    mask[r, 0, i, self.pad[r] : pos + 1] = 0
                else:
                    mask[r, 0, i, pos] = 0
        return mask

    @torch.inference_mode()
    def feed(self, cond: list[int], uncond: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        q = max(len(cond), len(uncond))
        if self.width == 0:  # prefill: left-pad the shorter context
            self.pad = torch.tensor([q - len(cond), q - len(uncond)])
        elif len(cond) != 1 or len(uncond) != 1:
            raise ValueError("after the prefill both rows advance one token at a time")
        pad_id = 0
        rows = [[pad_id] * (q - len(ids)) + list(ids) for ids in (cond, uncond)]
        positions = [
            [0] * (q - len(ids)) + list(range(self.lengths[r], self.lengths[r] + len(ids)))
            for r, ids in enumerate((cond, uncond))
        ]
        self.width += q
        self.lengths = [self.lengths[0] + len(cond), self.lengths[1] + len(uncond)]
        out = self.model(
            input_ids=torch.tensor(rows, device=self.device),
            position_ids=torch.tensor(positions, device=self.device),
            attention_mask=self._mask(q),
            cache_position=torch.arange(self.width - q, self.width, device=self.device),
            past_key_values=self.cache, use_cache=True, logits_to_keep=1,
        )
        logits = out.logits[:, -1].float()
        return logits[0], logits[1]


def _last(seq: list[int], token: int) -> int:
    for i in range(len(seq) - 1, -1, -1):
        if seq[i] == token:
            return i
    return -1


def parse_hw(seq: list[int], boi: int, img: int, digits: dict[int, str]) -> tuple[int, int] | None:
    """The ``h*w`` of the last ``<|image start|> h*w <|image token|>`` header in ``seq``."""
    end = _last(seq, img)
    start = _last(seq[:end], boi) if end >= 0 else -1
    if start < 0:
        return None
    text = "".join(digits.get(t, "?") for t in seq[start + 1 : end])
    h, _, w = text.partition("*")
    return (int(h), int(w)) if h.isdigit() and w.isdigit() else None


def sample(model, tokenizer, cond_ids: list[int], uncond_ids: list[int], **kwargs) -> list[int]:
    """Generate up to ``max_new_tokens`` ids after ``cond_ids`` (see :func:`iter_sample`)."""
    return list(iter_sample(model, tokenizer, cond_ids, uncond_ids, **kwargs))


def iter_sample(
    model,
    tokenizer,
    cond_ids: list[int],
    uncond_ids: list[int],
    *,
    guidance_scale: float,
    text: Settings,
    image: Settings,
    max_new_tokens: int,
    generator: torch.Generator,
    target_hw: tuple[int, int] | None = None,
    stop_at_image_end: bool = False,
    start_image: bool = False,
    allow_images: bool = True,
    step: Callable[[int, int], None] | None = None,
    total: int | None = None,
    trace: Trace | None = None,
    static_cache: bool = False,
    batched: bool = False,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` ids after ``cond_ids`` (which may end in ``<|image start|>``).

    ``start_image`` forces ``<|image start|>`` as the first token (drawn like every forced token, so
    the generator consumes what upstream's does whenever the model itself starts with the image);
    ``allow_images=False`` keeps a chat in text (no ``<|image start|>``, no unconditional branch).
    ``step(done, total)`` runs after every token: progress, and the point where a cancel lands.
    ``static_cache`` preallocates both KV caches for the whole run (what serving on a GPU uses);
    ``batched`` runs both branches as one batch-2 forward (:class:`_Pair`; image-only runs).
    """
    ids = tokenizer.ids
    boi, img, eoi, eos, bov = ids["BOI"], ids["IMG"], ids["EOI"], ids["EOS"], tokenizer.bov
    digit_ids = tokenizer.digit_ids
    digits = {v: k for k, v in digit_ids.items()}
    device = model.device
    vocab = model.config.vocab_size
    hw = target_hw or parse_hw(uncond_ids, boi, img, digits)  # X2I: the last reference's size
    pair = cond = uncond = None
    if batched:
        if not (stop_at_image_end and allow_images and (start_image or cond_ids[-1] == boi)):
            raise ValueError("batched CFG runs image-only generation (starting at, stopping at the image)")
        longest = max(len(cond_ids) + 1, len(uncond_ids) + 1)
        pair = _Pair(model, device, static_cache and longest + max_new_tokens)
    else:
        cond = _Branch(model, cond_ids, device, static_cache and len(cond_ids) + max_new_tokens)
        if allow_images:
            uncond = _Branch(model, uncond_ids, device, static_cache and len(uncond_ids) + max_new_tokens + 1)
    in_image = in_visual = False
    seq = list(cond_ids)
    visual_mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    visual_mask[bov:] = True
    total = total or max_new_tokens
    for t in range(max_new_tokens):
        u = ran = None
        last = seq[-1]
        if last == boi:
            in_image = True
        if pair is not None:
            if in_image:
                first = pair.width == 0
                c, u = pair.feed(seq if first else [last], [*uncond_ids, last] if first else [last])
                ran = u
            else:  # the forced <|image start|>: one allowed id, so its logits do not matter
                c = torch.zeros(vocab, device=device)
        else:
            c = cond.feed()
        if last == eoi and uncond is not None:
            in_image = in_visual = False
            ran = uncond.feed([eoi])  # keeps the unconditional cache in step; the logits are unused
        if in_image:
            if pair is None:
                u = ran = uncond.feed([last])
            if in_visual:
                v = len(seq) - _last(seq, img)
                h, w = hw
                mode = IMAGE_END if v == h * (w + 1) else ROW_END if v % (w + 1) == 0 else VISUAL
            elif last == img:
                in_visual = True
                hw = hw or parse_hw(seq, boi, img, digits)
                mode = VISUAL
            else:
                mode = HEADER
            if mode == VISUAL:
                x = F.log_softmax(u, -1) + guidance_scale * (F.log_softmax(c, -1) - F.log_softmax(u, -1))
                x = x.masked_fill(~visual_mask, float("-inf"))
            else:
                allowed = _forced(mode, len(seq) - _last(seq, boi), hw, tokenizer, digit_ids)
                x = torch.full_like(c, float("-inf"))
                x[allowed] = c[allowed]
            settings = image
        elif start_image and t == 0:
            mode, settings = HEADER, image
            x = torch.full_like(c, float("-inf"))
            x[boi] = c[boi]
        else:
            mode = TEXT
            x = c.masked_fill(visual_mask, float("-inf"))
            if not allow_images:
                x[boi] = float("-inf")
            settings = text
        x = filter_scores(x, settings)
        if settings.temperature <= 0:  # greedy
            token = int(x.argmax())
        else:
            token = int(torch.multinomial(x.softmax(-1), 1, generator=generator))
        if trace is not None:
            trace.modes.append(mode)
            trace.cond_logits.append(c)
            trace.uncond_logits.append(ran if ran is not None else torch.zeros_like(c))
            trace.uncond_used.append(mode == VISUAL)
            trace.uncond_len.append(0 if ran is None else pair.lengths[1] if pair else len(uncond.ids))
            trace.scores.append(x)
        seq.append(token)
        if cond is not None:
            cond.pending.append(token)
        if trace is not None and uncond is not None:
            trace.uncond_ids = uncond.ids + uncond.pending
        yield token
        if step is not None:
            step(t + 1, total)
        if token == eos or (stop_at_image_end and token == eoi):
            break


def _forced(mode: int, k: int, hw, tokenizer, digit_ids: dict[str, int]) -> list[int]:
    ids = tokenizer.ids
    if mode == IMAGE_END:
        return [ids["EOI"]]
    if mode == ROW_END:
        return [ids["EOL"]]
    if hw is not None:  # k = 1 right after <|image start|>
        header = tokenizer.encode(f"{hw[0]}*{hw[1]}")
        return [header[k - 1]] if k <= len(header) else [ids["IMG"]]
    if k in (1, 4):
        return [digit_ids[d] for d in "123456789"]
    if k in (2, 5):
        return [digit_ids[d] for d in "0123456789"]
    if k == 3:
        return [digit_ids["*"]]
    return [ids["IMG"]]
