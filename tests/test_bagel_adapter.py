"""The Bagel adapter on its tiny twin: contexts as upstream's inferencer builds them, sizes, thinking, bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from umm.catalog import load_catalog
from umm.control import RunControl
from umm.errors import InputError
from umm.registry import adapter_class
from umm.tiny import build_tiny_catalog
from umm.types import EditRequest, GenerateRequest, Message, UnderstandRequest

GEN = {"width": 96, "height": 64, "steps": 3, "num_images": 1}
EDIT = {"steps": 3, "num_images": 1}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return build_tiny_catalog(load_catalog(), tmp_path_factory.mktemp("tiny-bagel"), {"bagel"}).get("tiny-bagel")


@pytest.fixture(scope="module")
def adapter(spec):
    adapter = adapter_class("bagel")(spec)
    adapter.load(torch.device("cpu"), torch.float32)
    return adapter


@pytest.fixture
def texts(adapter, monkeypatch):
    """Every text segment appended to any context, decoded (to see what the contexts hold)."""
    seen: list[str] = []
    original = adapter.session.add_text

    def spy(context, ids):
        seen.append(adapter.tokenizer.decode(ids))
        return original(context, ids)

    monkeypatch.setattr(adapter.session, "add_text", spy)
    return seen


def _image(size=(61, 45), color=(200, 40, 30)) -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = (rng.random((size[1], size[0], 3)) * 60 + np.array(color) * 0.7).astype(np.uint8)
    return Image.fromarray(pixels)


def test_chat_context_and_thinking(adapter, texts):
    messages = [Message("user", "what is in this picture?", [_image()]), Message("assistant", "a cat"),
                Message("user", "describe it")]
    plain = "".join(adapter.understand(UnderstandRequest(messages, {"max_new_tokens": 6}, 0), RunControl()))
    assert isinstance(plain, str)
    assert texts == ["what is in this picture?", "a cat", "describe it"]
    texts.clear()
    list(adapter.understand(UnderstandRequest(messages, {"max_new_tokens": 6, "think": True}, 0), RunControl()))
    assert texts[0].startswith("You should first think about the reasoning process")
    with pytest.raises(InputError, match="end with a user message"):
        list(adapter.understand(UnderstandRequest(messages[:2]), RunControl()))


def test_closing_the_stream_cancels_the_run(adapter):
    control = RunControl()
    stream = adapter.understand(UnderstandRequest([Message("user", "hi")], {"max_new_tokens": 200,
                                                                           "temperature": 1.0}, 0), control)
    next(stream)
    stream.close()
    assert control.cancelled and control.steps < 200


def test_chat_stops_at_max_new_tokens(adapter):
    steps = []
    control = RunControl(on_progress=lambda done, total, what: steps.append((done, what)))
    list(adapter.understand(UnderstandRequest([Message("user", "hi")], {"max_new_tokens": 4}, 0), control))
    assert 1 <= len(steps) <= 4 and all(what == "tokens" for _, what in steps)


def test_generate_size_checks_and_separate_images(adapter):
    result = adapter.generate(GenerateRequest("a red cube", params={**GEN, "num_images": 2}, seed=1), RunControl())
    assert [im.size for im in result.images] == [(96, 64), (96, 64)]
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(result.images[1]))
    with pytest.raises(InputError, match="multiples of 16"):
        adapter.generate(GenerateRequest("x", params={**GEN, "width": 72}), RunControl())
    largest = adapter.model.config.max_latent_size * adapter.model.config.latent_downsample
    big = adapter.generate(GenerateRequest("x", params={**GEN, "width": 2 * largest, "height": largest}), RunControl())
    assert big.images[0].size == (largest, largest // 2)  # scaled into the position table


def test_generate_noise_is_upstreams_cpu_draw(adapter, monkeypatch):
    """The first image's initial noise is torch.randn(N, 64) after manual_seed(seed), as upstream draws it."""
    from umm.ports import bagel

    seen = []
    original = bagel.sample_latents

    def spy(session, branches, height, width, noise, guidance, **kwargs):
        seen.append(noise.clone())
        return original(session, branches, height, width, noise, guidance, **kwargs)

    monkeypatch.setattr(bagel, "sample_latents", spy)
    adapter.generate(GenerateRequest("a red cube", params=GEN, seed=7), RunControl())
    tokens = (64 // 16) * (96 // 16)
    assert torch.equal(seen[0], torch.randn(tokens, 64, generator=torch.Generator().manual_seed(7)))


def test_edit_output_takes_the_resized_input_size(adapter, texts):
    image = _image((61, 45))
    result = adapter.edit(EditRequest([image], "make it blue", params=EDIT, seed=3), RunControl())
    vae_t, _ = adapter.transforms()
    assert result.images[0].size == vae_t.size(61, 45)
    assert texts == ["make it blue", "make it blue"]  # cond (after the images) and img_uncond (no images)
    with pytest.raises(InputError):
        adapter.edit(EditRequest([image, image], "x", params=EDIT), RunControl())


@pytest.mark.parametrize("task", ["generate", "edit"])
def test_thinking_plans_first_and_reports_the_plan(adapter, texts, task):
    steps = []
    control = RunControl(on_progress=lambda done, total, what: steps.append(what))
    params = {**(GEN if task == "generate" else EDIT), "think": True, "max_think_tokens": 16}
    if task == "generate":
        result = adapter.generate(GenerateRequest("a red cube", params=params, seed=2), control)
    else:
        result = adapter.edit(EditRequest([_image()], "make it blue", params=params, seed=2), control)
    assert texts[0].startswith("You should first think about the planning process")
    prompt = "a red cube" if task == "generate" else "make it blue"
    # the system prompt reaches cond and img_uncond (one shared segment before any image), the prompt both too
    assert prompt in texts
    plan = result.info.text
    assert plan and result.info.as_dict()["text"] == plan
    assert texts[-1] == adapter.tokenizer.decode(adapter.encode(plan))  # the plan is appended to cond
    assert steps[0] == "tokens" and steps[-1] == "steps"


def test_thinking_branches_follow_the_inferencer(adapter):
    """T2I think: cond = [system, prompt, plan], text_uncond = [system], img_uncond = [system, prompt]."""
    from umm.ports.bagel import GEN_THINK_SYSTEM_PROMPT, empty_branches, with_image, with_text

    s = adapter.session
    b = with_text(with_text(empty_branches(), s, adapter.encode(GEN_THINK_SYSTEM_PROMPT)), s, adapter.encode("x"))
    assert b.img_uncond is b.cond and b.text_uncond.segments == ("text",) and b.cond.segments == ("text", "text")
    e = with_image(with_text(empty_branches(), s, [5]), s, torch.zeros(3, 28, 28), torch.zeros(1, 16, 4, 4))
    e = with_text(e, s, [6])
    assert e.cond.segments == ("text", "vae", "vit", "text")
    assert e.text_uncond.segments == ("text", "vae", "vit")
    assert e.img_uncond.segments == ("text", "text") and e.img_uncond is not e.cond


def test_bf16_path_runs(spec):
    adapter = adapter_class("bagel")(spec)
    adapter.load(torch.device("cpu"), torch.bfloat16)
    assert adapter.model.vae2llm.weight.dtype == torch.bfloat16
    chunks = list(adapter.understand(UnderstandRequest([Message("user", "hi", [_image()])], {"max_new_tokens": 3}),
                                     RunControl()))
    assert all(isinstance(c, str) for c in chunks)
    result = adapter.edit(EditRequest([_image()], "make it blue", params={**EDIT, "think": True,
                                                                          "max_think_tokens": 16}), RunControl())
    assert np.asarray(result.images[0]).std() > 0
