"""TokenFlow adapter: the tokenizer pickle through `umm convert`, loading, sampling behaviour, full-size names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from umm.adapters.tokenflow import COMPONENT, TOKENIZER_PICKLE, TokenFlowAdapter
from umm.catalog import Component, load_catalog
from umm.control import RunControl
from umm.convert import convert_file, converted_path
from umm.errors import CancelledError, ModelLoadError
from umm.ports.tokenflow import build_llm, load_pixel_decoder
from umm.ports.tokenflow.tiny import TINY_VQ, write_tokenizer_pickle
from umm.ports.tokenflow.vq import TokenFlowPixelDecoder, official_to_port, port_to_official
from umm.tiny import build_tiny_catalog
from umm.types import GenerateRequest

DATA = Path(__file__).parent / "data" / "tokenflow_names_shapes.json"


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    catalog = build_tiny_catalog(load_catalog(), tmp_path_factory.mktemp("tiny"), {"tokenflow"})
    return catalog.get("tiny-tokenflow")


@pytest.fixture(scope="module")
def adapter(twin):
    adapter = TokenFlowAdapter(twin)
    adapter.load(torch.device("cpu"), torch.float32)
    return adapter


def _generate(adapter, seed=3, control=None, **params):
    request = GenerateRequest("a red cat on a chair", params={"num_images": 2, **params}, seed=seed)
    return adapter.generate(request, control or RunControl())


def _pixels(result):
    return [np.asarray(im) for im in result.images]


@pytest.mark.parametrize("nesting", ["ema", "model", "state_dict"])
def test_convert_tokenizer_pickle_and_load_only_the_safetensors(tmp_path, nesting):
    pickle = tmp_path / TOKENIZER_PICKLE
    state = write_tokenizer_pickle(pickle, nesting)  # trainer layout: + "steps", argparse "args", raw "model"
    out = convert_file(pickle)
    assert out == converted_path(pickle)
    saved = load_file(out)
    assert set(saved) == set(state) and all(torch.equal(saved[k], v) for k, v in state.items())  # ema, not model
    pickle.unlink()  # the loader never reads the pickle
    decoder = load_pixel_decoder(out, torch.float32, "cpu")
    assert decoder.sizes == TINY_VQ
    port = decoder.state_dict()
    assert set(port) == set(official_to_port(state))
    assert all(torch.equal(port[k], v) for k, v in official_to_port(state).items())


def test_loader_asks_for_convert_first(twin, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(twin.repo, repo)
    converted_path(repo / COMPONENT / TOKENIZER_PICKLE).unlink()
    spec = twin.replace(repo=str(repo), components={COMPONENT: Component(str(repo / COMPONENT))})
    with pytest.raises(ModelLoadError, match="python -m umm convert"):
        TokenFlowAdapter(spec).load(torch.device("cpu"), torch.float32)


def test_wrong_scale_schedule_is_refused_by_name(twin):
    spec = twin.replace(options={**twin.options, "scales": [1, 2, 4]})
    with pytest.raises(ModelLoadError, match="scale schedule"):
        TokenFlowAdapter(spec).load(torch.device("cpu"), torch.float32)


def test_decoder_renames_round_trip():
    decoder = TokenFlowPixelDecoder(TINY_VQ)
    state = decoder.state_dict()
    assert official_to_port(port_to_official(state)).keys() == state.keys()
    assert any(k.startswith("decoder.conv_blocks.0.res.1.") for k in port_to_official(state))


def test_seeded_batched_images_and_progress_per_scale(adapter):
    steps = []
    control = RunControl(on_progress=lambda done, total, what: steps.append((done, total, what)))
    first = _generate(adapter, control=control)
    scales = len(adapter.scales)
    assert steps == [(k, scales, "scales") for k in range(1, scales + 1)]
    assert len(first.images) == 2 and first.images[0].size == (32, 32)
    assert not np.array_equal(*_pixels(first))  # two samples, not one image twice
    again, other = _generate(adapter), _generate(adapter, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(first), _pixels(again), strict=True))
    assert not np.array_equal(_pixels(first)[0], _pixels(other)[0])
    assert first.info.negative_prompt.startswith("lowres, bad anatomy")


def test_kv_cache_gives_the_same_images_as_recomputing(adapter, twin):
    recompute = TokenFlowAdapter(twin.replace(options={**twin.options, "kv_cache": False}))
    recompute.lm, recompute.vq, recompute.tokenizer, recompute.layout = (
        adapter.lm, adapter.vq, adapter.tokenizer, adapter.layout)
    recompute.device, recompute.dtype = adapter.device, adapter.dtype
    for strategy in (1, 2):
        cached, full = _generate(adapter, loop_strategy=strategy), _generate(recompute, loop_strategy=strategy)
        assert all(np.array_equal(a, b) for a, b in zip(_pixels(cached), _pixels(full), strict=True))


def test_cancel_between_scales(adapter):
    seen = []

    def progress(done, total, what):
        seen.append(done)
        if done == 2:  # scale 2 of 9 is running
            control.cancel()

    control = RunControl(on_progress=progress)
    with pytest.raises(CancelledError):
        _generate(adapter, control=control)
    assert seen == [1, 2]  # stopped before scale 3
    assert len(_generate(adapter).images) == 2  # the next request works


def test_full_size_names_and_shapes_match_upstream():
    """Built on the meta device from the official config; upstream's names/shapes are test data."""
    data = json.loads(DATA.read_text())
    lm = build_llm(data["llm_config"], tuple(data["scales"]))
    assert {k: list(v.shape) for k, v in lm.state_dict().items()} == data["llm"]
    with torch.device("meta"):
        vq = TokenFlowPixelDecoder(data["tokenizer_sizes"])
    ours = {k: list(v.shape) for k, v in port_to_official(vq.state_dict()).items()}
    assert ours == data["tokenizer"]


def test_guidance_ramps_with_the_scale_and_masks_every_non_image_column():
    from umm.ports.tokenflow.sampler import guide

    cond, uncond = torch.full((1, 2, 10), 2.0), torch.full((1, 2, 10), 1.0)
    first, last = guide(cond, uncond, 0, 9, 7.5, 3, 8), guide(cond, uncond, 8, 9, 7.5, 3, 8)
    assert torch.equal(first[..., 3:8], cond[..., 3:8])  # t = 0 at the first scale
    assert torch.allclose(last[..., 3:8], torch.full((1, 2, 5), 2.0 + 7.5))  # (1 + t)·2 − t·1, t = cfg
    assert torch.isinf(last[..., :3]).all() and torch.isinf(last[..., 8:]).all()


def test_missing_sentencepiece_is_named(twin, monkeypatch):
    """The official tokenizer is a SentencePiece model only; converting it needs two optional packages."""
    import transformers

    def refuse(*args, **kwargs):
        raise ImportError("LlamaTokenizer requires the SentencePiece library but it was not found")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    with pytest.raises(ModelLoadError, match="pip install sentencepiece protobuf"):
        TokenFlowAdapter(twin).load(torch.device("cpu"), torch.float32)
