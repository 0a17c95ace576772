"""DeepGen adapter on its tiny checkpoint: layout, VLM source rule, prompts, sizes, N images, seeds, offload.

The generic contract (types, seeds, cancel, validation) runs in test_contract.py; golden parity with
upstream in test_deepgen_port.py. Everything here runs at 64 px and 1-2 steps on CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from umm.adapters.deepgen import EDIT_NEGATIVE_PROMPT, DeepGenAdapter
from umm.catalog import Component
from umm.control import RunControl
from umm.errors import InputError, ModelLoadError
from umm.ports.deepgen import sample, schedule
from umm.types import EditRequest, GenerateRequest

FAST = {"steps": 2, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def spec(tiny_catalog):
    return tiny_catalog.get("tiny-deepgen")


@pytest.fixture(scope="module")
def adapter(spec) -> DeepGenAdapter:
    adapter = DeepGenAdapter(spec)
    adapter.load(torch.device("cpu"), torch.float32)
    yield adapter
    adapter.unload()


def _px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _picture(seed: int = 0, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _generate(adapter, seed=0, **params):
    return adapter.generate(GenerateRequest("a red cube", params={**FAST, **params}, seed=seed), RunControl())


def _edit(adapter, seed=0, image=None, negative="", **params):
    request = EditRequest([image or _picture()], "make it blue", negative, params={**FAST, **params}, seed=seed)
    return adapter.edit(request, RunControl())


def test_tiny_checkpoint_has_the_official_layout_and_sizes_come_from_the_files(adapter):
    root = Path(adapter.spec.repo)
    for folder in ("vlm", "tokenizer", "connector", "transformer", "vae", "scheduler"):
        assert (root / folder).is_dir(), folder
    assert json.loads((root / "model_index.json").read_text())["_class_name"] == ["deepgen_pipeline", "DeepGenPipeline"]
    layers = adapter.vlm.config.text_config.num_hidden_layers
    assert adapter.connector.num_selected_layers == len(range(layers - 1, 0, -6)) == 2  # not upstream's 6
    assert adapter.connector.meta_queries.shape == (4, adapter.vlm.config.text_config.hidden_size)
    assert adapter.connector.projector_3.out_features == adapter.transformer.config.joint_attention_dim
    assert adapter.connector.projector_2.out_features == adapter.transformer.config.pooled_projection_dim
    assert adapter.scheduler_config["shift"] == 3.0


def test_prompts_are_wrapped_and_tokenised_as_one_left_padded_batch(adapter):
    texts = adapter.template.texts(["a cat", ""])
    assert texts[0] == "<|im_start|>user\nGenerate an image: a cat<|im_end|>\n<|im_start|>assistant\n"
    assert "Generate an image: <|im_end|>" in texts[1]
    grid = torch.tensor([[1, 4, 6]])
    edit = adapter.template.texts(["make it <|image_pad|>blue"], grid, 2)[0]
    assert "Generate an image" not in edit
    assert edit.count("<|image_pad|>") == 6 and "<|vision_end|>\nmake it blue<|im_end|>" in edit
    from umm.ports.deepgen import tokenize

    tokens = tokenize(adapter.tokenizer, texts)
    assert tokens["attention_mask"][0].all() and not tokens["attention_mask"][1, 0]  # the short row pads left


def test_sizes_are_snapped_and_n_images_come_back_separately(adapter):
    out = _generate(adapter, seed=4, width=100, height=72, num_images=2)
    assert [im.size for im in out.images] == [(96, 64)] * 2  # multiples of 16
    assert not np.array_equal(_px(out.images[0]), _px(out.images[1]))
    single = _generate(adapter, seed=4, width=100, height=72)
    assert np.array_equal(_px(single.images[0]), _px(out.images[0]))  # image 0 does not depend on N
    edited = _edit(adapter, seed=4, width=100, height=72, num_images=2)
    assert [im.size for im in edited.images] == [(96, 64)] * 2  # multiples of 32, the input resized to it
    assert np.array_equal(_px(_edit(adapter, seed=4, width=100, height=72).images[0]), _px(edited.images[0]))


def test_edit_depends_on_the_image_and_uses_the_official_negative(adapter):
    first = _edit(adapter, seed=1, image=_picture(1))
    other = _edit(adapter, seed=1, image=_picture(2))
    assert not np.array_equal(_px(first.images[0]), _px(other.images[0]))
    assert first.info.negative_prompt == EDIT_NEGATIVE_PROMPT
    own = _edit(adapter, seed=1, image=_picture(1), negative="ugly")
    assert own.info.negative_prompt == "ugly" and not np.array_equal(_px(own.images[0]), _px(first.images[0]))
    with pytest.raises(InputError, match="at most 1"):
        adapter.edit(EditRequest([_picture(), _picture()], "x", params=FAST, seed=0), RunControl())


def test_guidance_one_runs_the_cond_branch_only(adapter):
    guidance = adapter.condition(["a cat", ""])
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    timesteps, sigmas = schedule(adapter.scheduler_config, 2, 16, "cpu")
    batches = []

    def spy(done, total, trace):
        batches.append(trace["velocity"].shape[0])
        torch.testing.assert_close(trace["velocity"], trace["cond"])

    sample(adapter.transformer, latents, guidance, timesteps, sigmas, 1.0, on_step=spy)
    assert batches == [1, 1]
    assert not torch.equal(guidance.prompt_embeds, guidance.negative_prompt_embeds)


def test_missing_vlm_is_refused_unless_the_catalog_names_stock_weights(spec, tmp_path):
    root = tmp_path / "no-vlm"
    shutil.copytree(spec.repo, root)
    shutil.move(root / "vlm", tmp_path / "stock-vlm")
    bare = DeepGenAdapter(spec.replace(repo=str(root)))
    with pytest.raises(ModelLoadError, match=r"no vlm/ folder.*stock Qwen2\.5-VL"):
        bare.load(torch.device("cpu"), torch.float32)
    stock = DeepGenAdapter(spec.replace(repo=str(root), components={"vlm": Component(str(tmp_path / "stock-vlm"))}))
    stock.load(torch.device("cpu"), torch.float32)
    try:
        assert len(_generate(stock, steps=1).images) == 1
    finally:
        stock.unload()


def test_cpu_offload_gives_the_same_images(spec, adapter):
    reference = _edit(adapter, seed=3).images[0]
    offloaded = DeepGenAdapter(spec.replace(options={**spec.options, "cpu_offload": True}))
    offloaded.load(torch.device("cpu"), torch.float32)
    try:
        assert offloaded._hooks is None  # nothing to offload to on a CPU-only run
        offloaded._enable_offload(torch.device("cpu"))  # exercise the hook chain anyway
        assert np.array_equal(_px(_edit(offloaded, seed=3).images[0]), _px(reference))
        assert len(offloaded.modules()) == 4
        offloaded.to(torch.device("cpu"))
    finally:
        offloaded.unload()
    assert offloaded.vlm is None and offloaded._hooks is None and offloaded.tokenizer is None


def test_size_multiples_come_from_the_configs(adapter):
    assert adapter.size_multiple(edit=False) == 16 and adapter.size_multiple(edit=True) == 32


def test_predict_without_references_is_the_stock_sd3_forward(adapter):
    """On another config and a non-square size than the golden one; references of another size also run."""
    from umm.ports.deepgen import predict

    gen = torch.Generator().manual_seed(5)
    config = adapter.transformer.config
    latents = torch.randn(2, config.in_channels, 12, 8, generator=gen)
    context = torch.randn(2, 7, config.joint_attention_dim, generator=gen)
    pooled = torch.randn(2, config.pooled_projection_dim, generator=gen)
    timestep = torch.tensor([900.0, 300.0])
    with torch.no_grad():
        ours = predict(adapter.transformer, latents, context, pooled, timestep)
        stock = adapter.transformer(latents, context, pooled, timestep).sample
        ref = torch.randn(2, config.in_channels, 8, 8, generator=gen)
        with_ref = predict(adapter.transformer, latents, context, pooled, timestep, [ref])
    torch.testing.assert_close(ours, stock, rtol=0, atol=1e-6)
    assert with_ref.shape == latents.shape and not torch.allclose(with_ref, ours)
