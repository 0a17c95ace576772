"""Seeded sampling and streamed text generation on top of transformers' ``generate``.

``generate`` samples from the process-global RNG. To honour an explicit ``torch.Generator`` without
touching global state, :class:`SeededSampler` draws the token itself and hands ``generate`` a one-hot
score row, which greedy decoding then picks. Everything else (caches, stopping, streaming) stays
transformers' own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria, TextIteratorStreamer

from umm.control import RunControl


def filter_logits(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then nucleus filtering; 0 (or 1.0 for top-p) disables a filter."""
    scores = scores.float() / max(temperature, 1e-5)
    if top_k and 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_scores.softmax(-1) >= top_p  # keep the token that crosses top_p
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return scores


def sample_tokens(
    scores: torch.Tensor,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row; temperature 0 means greedy."""
    if temperature <= 0:
        return scores.argmax(-1)
    probs = filter_logits(scores, temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class SeededSampler(LogitsProcessor):
    """Samples with our generator and returns scores whose argmax is the sampled token."""

    def __init__(self, *, temperature: float, top_k: int, top_p: float, generator: torch.Generator) -> None:
        self.temperature, self.top_k, self.top_p, self.generator = temperature, top_k, top_p, generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        tokens = sample_tokens(
            scores, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, generator=self.generator
        )
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, tokens[:, None], 0.0)


class ControlStopping(StoppingCriteria):
    """Ends generation at the next token once the run is cancelled, over time or its hook failed.

    ``generate`` cannot carry an exception out of a stopping criterion, so the first one raised by
    ``control.step`` (cancel, time limit, an injected fault) is kept and re-raised by :meth:`reraise`
    once ``generate`` has returned.
    """

    def __init__(self, control: RunControl, max_new_tokens: int) -> None:
        self.control, self.max_new_tokens, self.done = control, max_new_tokens, 0
        self.error: BaseException | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        self.done += 1
        if self.error is None:
            try:
                self.control.step(self.done, self.max_new_tokens, "tokens")
            except BaseException as err:
                self.error = err
        stop = self.error is not None
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


def stream_generate(
    model: Any,
    inputs: dict[str, Any],
    tokenizer: Any,
    control: RunControl,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator,
    generate: Callable[..., Any] | None = None,
    **generate_kwargs: Any,
) -> Iterator[str]:
    """Run ``model.generate`` in a worker thread and yield decoded text chunks as they come.

    ``generate`` replaces ``model.generate`` where a model's override drops ``logits_processor``.
    If the consumer stops early (closed generator, client gone) the run is cancelled and the worker
    finishes within one token, so the accelerator lane is free when this generator is closed.
    """
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failure: list[BaseException] = []
    generate = generate or model.generate

    stopping = ControlStopping(control, max_new_tokens)

    def work() -> None:
        try:
            with torch.inference_mode():
                generate(
                    **inputs,
                    streamer=streamer,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    # greedy (temperature 0) needs no sampler: generate's own argmax is the same token
                    logits_processor=[]
                    if temperature <= 0
                    else [SeededSampler(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)],
                    stopping_criteria=[stopping],
                    **generate_kwargs,
                )
            stopping.reraise()
        except BaseException as err:
            failure.append(err)
        finally:
            streamer.end()

    worker = threading.Thread(target=work, name="umm-generate", daemon=True)
    worker.start()
    finished = False
    try:
        for chunk in streamer:
            if chunk:
                yield chunk
        finished = True
    finally:
        if not finished:
            control.cancel()
        worker.join()
    if failure:
        raise failure[0]
    control.check()


def detokenize(tokens: Iterable[int], tokenizer: Any, control: RunControl, total: int) -> Iterator[str]:
    """Text chunks as token ids arrive from a model's own decode loop, one progress step per id.

    A chunk is held back while it ends in an incomplete multi-byte character; ids past the tokenizer's
    vocabulary (image or padding ids) are dropped.
    """
    ids: list[int] = []
    shown = ""
    for done, token in enumerate(tokens, start=1):
        control.step(done, total, "tokens")
        if token < len(tokenizer):
            ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            continue
        if len(text) > len(shown) and text.startswith(shown):
            yield text[len(shown):]
            shown = text
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if len(text) > len(shown) and text.startswith(shown):
        yield text[len(shown):]
