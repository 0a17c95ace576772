"""OmniGen2 adapter on its tiny checkpoint: layout, sizes, guidance, multi-image edits, offload.

The generic contract (types, seeds, cancel, validation) runs in test_contract.py; these tests cover what is
specific to OmniGen2. Everything runs at 64-ish pixels and 1-2 steps on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from umm.adapters.omnigen2 import NEGATIVE_PROMPT, SYSTEM_PROMPT, OmniGen2Adapter, _fit, expand_image_tokens
from umm.control import RunControl
from umm.errors import InputError
from umm.types import EditRequest, GenerateRequest, Message, UnderstandRequest

FAST = {"steps": 1, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def adapter(tiny_catalog) -> OmniGen2Adapter:
    adapter = OmniGen2Adapter(tiny_catalog.get("tiny-omnigen2"))
    adapter.load(torch.device("cpu"), torch.float32)
    yield adapter
    adapter.unload()


def _px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _red() -> Image.Image:
    return Image.new("RGB", (48, 40), (200, 30, 30))


def _noise(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _edit(adapter, images, seed=0, control=None, **params):
    request = EditRequest(images, "make it blue", params={**FAST, **params}, seed=seed)
    return adapter.edit(request, control or RunControl())


def _generate(adapter, seed=0, prompt="a red cube", control=None, **params):
    return adapter.generate(GenerateRequest(prompt, params={**FAST, **params}, seed=seed), control or RunControl())


def test_tiny_checkpoint_has_the_official_layout(adapter):
    root = Path(adapter.spec.repo)
    for folder in ("mllm", "processor", "transformer", "vae", "scheduler"):
        assert (root / folder).is_dir(), folder
    assert json.loads((root / "model_index.json").read_text())["_class_name"] == "OmniGen2Pipeline"
    assert adapter.transformer.config.text_feat_dim == adapter.mllm.config.text_config.hidden_size
    assert adapter.vae.config.latent_channels == adapter.transformer.config.in_channels == 16
    assert adapter.vae_scale_factor == 8 and adapter.dynamic_time_shift
    tokens = adapter.tokenizer.convert_tokens_to_ids(
        ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|endoftext|>"]
    )
    assert adapter.tokenizer.unk_token_id not in tokens and len(set(tokens)) == 6


def test_prompt_is_templated_and_encoded_from_the_last_hidden_layer(adapter):
    hidden, mask = adapter.encode_prompt("a cat")
    text = adapter.tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "a cat"}], tokenize=False
    )
    assert SYSTEM_PROMPT in text and "a cat" in text
    ids = adapter.tokenizer([text], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = adapter.mllm(ids, output_hidden_states=True).hidden_states[-1]
    assert hidden.shape == (1, ids.shape[1], adapter.transformer.config.text_feat_dim)
    assert mask.dtype == torch.bool and bool(mask.all())
    torch.testing.assert_close(hidden, reference)


def test_generate_reports_progress_and_defaults(adapter):
    seen = []
    result = _generate(adapter, steps=2, num_images=2, control=RunControl(on_progress=lambda *a: seen.append(a)))
    assert seen == [(1, 2, "steps"), (2, 2, "steps")]
    assert len(result.images) == 2 and not np.array_equal(_px(result.images[0]), _px(result.images[1]))
    assert result.info.negative_prompt == NEGATIVE_PROMPT  # the official one when none is given
    assert result.info.params["text_guidance_scale"] == 5.0 and result.info.params["cfg_range_end"] == 1.0
    assert {"encode_text_s", "sample_s", "decode_s"} <= set(result.info.timings)
    custom = adapter.generate(GenerateRequest("a red cube", "dark", params=FAST, seed=0), RunControl())
    assert custom.info.negative_prompt == "dark"


def test_prompt_conditions_the_image(adapter):
    a = _generate(adapter, prompt="a red cube").images[0]
    b = _generate(adapter, prompt="a dog running under the rain").images[0]
    assert not np.array_equal(_px(a), _px(b))


@pytest.mark.parametrize(("width", "height"), [(64, 64), (80, 64), (64, 112), (72, 64)])
def test_generate_honours_the_output_size(adapter, width, height):
    assert _generate(adapter, width=width, height=height).images[0].size == (width, height)


def test_outputs_above_max_pixels_are_generated_smaller_and_resized(adapter):
    assert _fit(1024, 2048, 1024 * 1024, 16) == (720, 1440)
    assert _fit(64, 64, 1024 * 1024, 16) == (64, 64)
    result = _generate(adapter, width=128, height=96, max_pixels=4096)
    assert result.images[0].size == (128, 96)


def test_edit_with_one_and_two_input_images(adapter):
    one = _edit(adapter, [_red()])
    assert one.images[0].size == (48, 32)  # one input: the output follows its size (multiple of 16)
    two = _edit(adapter, [_red(), _noise(1)])
    assert two.images[0].size == (64, 64)  # several inputs: width x height
    other = _edit(adapter, [_red(), _noise(2)])
    assert not np.array_equal(_px(two.images[0]), _px(other.images[0])), "the second image must matter"
    three = _edit(adapter, [_red(), _noise(1), _noise(3, (32, 32))])
    assert three.images[0].size == (64, 64)


def test_edit_size_can_ignore_the_input(adapter):
    result = _edit(adapter, [_red()], match_input_size=False, width=96, height=64)
    assert result.images[0].size == (96, 64)


def test_image_guidance_changes_the_edit(adapter):
    low = _edit(adapter, [_red()], image_guidance_scale=1.0, seed=5)
    high = _edit(adapter, [_red()], image_guidance_scale=2.0, seed=5)
    assert not np.array_equal(_px(low.images[0]), _px(high.images[0]))
    # Outside the CFG range no guidance applies, so the image scale no longer matters.
    off = {"cfg_range_start": 0.5, "cfg_range_end": 1.0, "seed": 5}
    a = _edit(adapter, [_red()], image_guidance_scale=1.0, **off)
    b = _edit(adapter, [_red()], image_guidance_scale=2.0, **off)
    assert np.array_equal(_px(a.images[0]), _px(b.images[0]))


def test_edit_rejects_bad_requests(adapter):
    with pytest.raises(InputError, match="at most 3 input image"):
        _edit(adapter, [_red()] * 4)
    with pytest.raises(InputError, match="at least one input image"):
        _edit(adapter, [])
    with pytest.raises(InputError, match=r"CFG range start .* must not be greater than CFG range end"):
        _edit(adapter, [_red()], cfg_range_start=0.8, cfg_range_end=0.2)


def test_input_images_are_downscaled_like_upstream(adapter):
    big = Image.new("RGB", (3000, 1000))
    assert tuple(adapter.preprocess(big, 1024 * 1024).shape) == (1, 3, 576, 1760)
    tall = Image.new("RGB", (100, 2500))  # the 2048 px side limit binds before max_pixels
    assert tuple(adapter.preprocess(tall, 1024 * 1024).shape) == (1, 3, 2048, 80)
    small = Image.new("RGB", (40, 24))  # never upscaled; at least 16 px
    assert tuple(adapter.preprocess(small, 1024 * 1024).shape) == (1, 3, 16, 32)


def test_understanding_with_several_images_and_turns(adapter):
    messages = [
        Message("user", "Compare these.", [_red(), _noise(4, (56, 40))]),
        Message("assistant", "They differ."),
        Message("user", "How? <|image_pad|>"),  # a literal placeholder in the text is ignored
    ]
    chunks = list(
        adapter.understand(UnderstandRequest(messages, {"max_new_tokens": 6, "temperature": 1.0}, 1), RunControl())
    )
    assert chunks and all(isinstance(c, str) for c in chunks)


def test_expand_image_tokens():
    grid = torch.tensor([[1, 2, 4], [1, 4, 4]])
    text = "a<|image_pad|>b<|image_pad|>c"
    assert expand_image_tokens(text, grid, 2) == "a" + "<|image_pad|>" * 2 + "b" + "<|image_pad|>" * 4 + "c"
    with pytest.raises(ValueError):
        expand_image_tokens("no images", grid, 2)


def test_one_mllm_serves_all_tasks_and_cpu_offload_gives_the_same_images(tiny_catalog, adapter):
    reference = _edit(adapter, [_red()], seed=3).images[0]
    offloaded = OmniGen2Adapter(tiny_catalog.get("tiny-omnigen2").replace(options={"cpu_offload": True}))
    offloaded.load(torch.device("cpu"), torch.float32)
    try:
        assert offloaded._hooks is None  # nothing to offload to on a CPU-only run
        offloaded._enable_offload(torch.device("cpu"))  # exercise the hook chain anyway
        mllm = offloaded.mllm
        chat = UnderstandRequest([Message("user", "hi", [_red()])], {"max_new_tokens": 2}, 0)
        assert list(offloaded.understand(chat, RunControl()))
        assert np.array_equal(_px(_edit(offloaded, [_red()], seed=3).images[0]), _px(reference))
        assert offloaded.mllm is mllm and len(offloaded.modules()) == 3
        offloaded.to(torch.device("cpu"))
    finally:
        offloaded.unload()
    assert offloaded.mllm is None and offloaded._hooks is None and offloaded.tokenizer is None
