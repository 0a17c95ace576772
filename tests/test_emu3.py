"""Emu3: the image-token grid, guidance, processor order and the chat prompt, on the tiny checkpoint."""

from __future__ import annotations

import logging

import pytest
import torch

from umm.adapters.emu3 import NEGATIVE_PROMPT, GridConstraint
from umm.control import RunControl
from umm.sampling import SeededSampler
from umm.types import GenerateRequest, Message


@pytest.fixture(scope="module")
def emu3(tiny_catalog):
    from umm.adapters.emu3 import Emu3Adapter

    adapter = Emu3Adapter(tiny_catalog.get("tiny-emu3"))
    adapter.load(torch.device("cpu"), torch.float32)
    return adapter


def _sample(adapter, *, area=384, ratio="3:2", guidance=3.0, negative=NEGATIVE_PROMPT, seed=0, n=1):
    return adapter.sample_image_tokens(
        "a red cube",
        negative,
        num_images=n,
        image_area=area,
        ratio=ratio,
        guidance_scale=guidance,
        temperature=1.0,
        top_k=2048,
        generator=torch.Generator().manual_seed(seed),
        control=RunControl(),
    )


def test_the_tiny_twin_both_chats_and_generates(tiny_catalog):
    spec = tiny_catalog.get("tiny-emu3")
    assert spec.can("understand") and spec.can("generate")


def test_generated_tokens_obey_the_grid_and_decode_to_the_requested_size(emu3):
    tok = emu3.processor.tokenizer
    mapping = emu3.model.vocabulary_mapping
    tokens, (height, width) = _sample(emu3, area=384, ratio="3:2", n=2)  # 24x16 px: 3 x 2 tokens
    assert (height, width) == (2, 3)
    assert tokens.shape == (2, height * (width + 1) + 3)
    visual = set(mapping.image_tokens)
    for row in tokens.tolist():
        grid = row[: height * (width + 1)]
        eol = [i for i, t in enumerate(grid) if t == mapping.eol_token_id]
        assert eol == [(width + 1) * r + width for r in range(height)]
        assert all(t in visual for i, t in enumerate(grid) if i not in eol)
        ends = [tok.convert_tokens_to_ids(tok.eof_token), tok.convert_tokens_to_ids(tok.eoi_token), tok.eos_token_id]
        assert row[-3:] == ends
    images = emu3.decode(tokens, height, width)
    assert [im.size for im in images] == [(24, 16), (24, 16)]


def test_a_tall_one_token_wide_grid_still_ends_properly():
    """Upstream's example rule (EOL whenever offset % (w+1) == 0) puts an EOL where EOI belongs at w=1."""

    class Tok:
        eof_token, eoi_token, eos_token_id, pad_token_id = "eof", "eoi", 7, 8

        def convert_tokens_to_ids(self, token):
            return {"eof": 5, "eoi": 6}[token]

    class Mapping:
        image_tokens, eol_token_id = [10, 11], 4

    grid = GridConstraint(Tok(), Mapping(), height=2, width=1, prompt_len=0)
    allowed = [grid.allowed(k).tolist() for k in range(8)]
    assert allowed == [[10, 11], [4], [10, 11], [4], [5], [6], [7], [8]]


def test_areas_beyond_the_context_shrink_to_fit(emu3, caplog):
    limit = emu3.model.config.text_config.max_position_embeddings
    with caplog.at_level(logging.WARNING):
        height, width, area = emu3.plan_grid("a red cube", 518400, "16:9")
    assert area < 518400 and "context" in caplog.text
    prompt = emu3.image_inputs(["a red cube"], area, "16:9")["input_ids"].shape[1]
    assert prompt + height * (width + 1) + 3 <= limit
    assert width > height  # the aspect ratio survives the shrink
    assert emu3.plan_grid("a red cube", 384, "3:2") == (2, 3, 384)  # small enough: untouched


def test_guidance_with_a_negative_prompt_changes_what_is_sampled(emu3, monkeypatch):
    seen: dict[str, list[torch.Tensor]] = {}
    original = SeededSampler.__call__

    def spy(self, input_ids, scores):
        seen.setdefault(key, []).append(scores.clone())
        return original(self, input_ids, scores)

    monkeypatch.setattr(SeededSampler, "__call__", spy)
    runs = {}
    for key, guidance, negative in (("plain", 1.0, NEGATIVE_PROMPT), ("cfg", 3.0, NEGATIVE_PROMPT),
                                    ("again", 3.0, NEGATIVE_PROMPT), ("other", 3.0, "a blue sphere")):
        runs[key] = _sample(emu3, area=576, ratio="1:1", guidance=guidance, negative=negative, seed=1)[0]
    assert torch.equal(runs["cfg"], runs["again"])  # seeded
    first = {key: scores[0] for key, scores in seen.items()}  # the first token's distribution
    assert torch.equal(first["cfg"], first["again"])
    assert not torch.allclose(first["cfg"], first["plain"])
    assert not torch.allclose(first["cfg"], first["other"])
    assert not torch.equal(runs["cfg"], runs["plain"]) or not torch.equal(runs["cfg"], runs["other"])


def test_guidance_then_grid_mask_then_our_sampler(emu3, monkeypatch):
    from transformers import GenerationMixin

    seen = []
    original = GenerationMixin._get_logits_processor

    def spy(self, *args, **kwargs):
        processors = original(self, *args, **kwargs)
        seen.append([type(p).__name__ for p in processors])
        return processors

    monkeypatch.setattr(GenerationMixin, "_get_logits_processor", spy)
    _sample(emu3, guidance=3.0)
    assert seen == [
        ["UnbatchedClassifierFreeGuidanceLogitsProcessor", "PrefixConstrainedLogitsProcessor", SeededSampler.__name__]
    ]


def test_generate_reports_progress_per_token_and_uses_the_official_prompts(emu3):
    steps = []
    control = RunControl(on_progress=lambda done, total, what: steps.append((done, total)))
    params = emu3.spec.capability("generate").validate({"num_images": 1})
    result = emu3.generate(GenerateRequest("a red cube", params=params, seed=3), control)
    width_px, height_px = result.images[0].size
    total = (height_px // 8) * (width_px // 8 + 1) + 3
    assert steps[-1] == (total, total) and len(steps) == total
    assert result.info.negative_prompt == NEGATIVE_PROMPT
    assert result.info.prompt == "a red cube"


def test_chat_prompt_follows_the_emu3_format(emu3):
    from umm.adapters.base import chat_conversation

    conversation, images = chat_conversation(
        [Message("user", "What is this?", [object.__new__(_FakeImage)]), Message("assistant", "A cube."),
         Message("user", "Which colour?")],
        emu3.system_prompt,
    )
    prompt = emu3.processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert prompt == (
        "You are a helpful assistant. USER: <image>What is this? ASSISTANT: A cube. USER: Which colour? ASSISTANT:"
    )
    assert len(images) == 1


class _FakeImage:
    def convert(self, mode):
        return self
