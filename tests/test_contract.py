"""The adapter contract, run over every family in the catalog through its tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cheap_params, tiny_ids
from PIL import Image

from umm.catalog import CAPABILITIES
from umm.control import RunControl
from umm.errors import CancelledError, InputError
from umm.registry import adapter_class
from umm.types import EditRequest, GenerateRequest, ImageResult, Message, UnderstandRequest

IDS = tiny_ids()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _generate(manager, model_id, seed, **params):
    return manager.generate(model_id, GenerateRequest("a red cube on a table", params=params, seed=seed))


def _edit(manager, model_id, seed, **params):
    image = Image.new("RGB", (48, 40), (200, 30, 30))
    return manager.edit(model_id, EditRequest([image], "make it blue", params=params, seed=seed))


def _chat(manager, model_id, seed, **params):
    image = Image.new("RGB", (40, 56), (20, 120, 220))
    messages = [Message("user", "What is in this picture?", [image])]
    return list(manager.understand(model_id, UnderstandRequest(messages, params=params, seed=seed)))


def _small(spec, capability):
    """Cheap settings; two images where a model makes several, so the count is checked too."""
    params = cheap_params(spec, capability)
    if "num_images" in params:
        params["num_images"] = 2
    return params


@pytest.mark.parametrize("model_id", IDS)
def test_umm_check_passes_on_the_twin(tiny_catalog, model_id):
    """`umm check` on the twin: files, configs, safetensors headers vs the adapter's modules on meta, tokens."""
    from umm.check import check_model

    report = check_model(tiny_catalog.get(model_id))
    assert report.ok, report.table()


@pytest.mark.parametrize("model_id", IDS)
def test_capabilities_match_implemented_methods(tiny_catalog, model_id):
    spec = tiny_catalog.get(model_id)
    cls = adapter_class(spec.family)
    for capability in CAPABILITIES:
        if spec.can(capability):
            assert cls.implements(capability), f"{model_id} declares {capability} but does not implement it"
    for real in (s for s in tiny_catalog if s.family == spec.family):
        assert all(cls.implements(c) for c in real.capabilities)


@pytest.mark.parametrize("model_id", IDS)
def test_generate_types_sizes_and_seeds(manager, tiny_catalog, model_id):
    spec = tiny_catalog.get(model_id)
    if not spec.can("generate"):
        pytest.skip(f"{model_id} does not generate")
    params = _small(spec, "generate")
    first = _generate(manager, model_id, 1, **params)
    assert isinstance(first, ImageResult)
    assert len(first.images) == params.get("num_images", 1)
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" and min(im.size) >= 8 for im in first.images)
    assert first.info.seed == 1 and first.info.model_id == model_id and first.info.task == "generate"
    assert first.info.params == spec.capability("generate").validate(params)
    assert first.info.timings
    again = _generate(manager, model_id, 1, **params)
    other = _generate(manager, model_id, 2, **params)
    assert np.array_equal(_pixels(first.images[0]), _pixels(again.images[0]))
    assert not np.array_equal(_pixels(first.images[0]), _pixels(other.images[0]))
    unseeded = _generate(manager, model_id, None, **params)
    assert isinstance(unseeded.info.seed, int) and unseeded.info.seed >= 0


@pytest.mark.parametrize("model_id", IDS)
def test_edit_types_sizes_and_seeds(manager, tiny_catalog, model_id):
    spec = tiny_catalog.get(model_id)
    if not spec.can("edit"):
        pytest.skip(f"{model_id} does not edit")
    params = _small(spec, "edit")
    first = _edit(manager, model_id, 1, **params)
    assert isinstance(first, ImageResult) and first.images
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in first.images)
    assert first.info.seed == 1 and first.info.task == "edit"
    again = _edit(manager, model_id, 1, **params)
    other = _edit(manager, model_id, 2, **params)
    assert np.array_equal(_pixels(first.images[0]), _pixels(again.images[0]))
    assert not np.array_equal(_pixels(first.images[0]), _pixels(other.images[0]))


@pytest.mark.parametrize("model_id", IDS)
def test_understand_streams_text_and_honours_seed(manager, tiny_catalog, model_id):
    spec = tiny_catalog.get(model_id)
    if not spec.can("understand"):
        pytest.skip(f"{model_id} does not understand")
    params = _small(spec, "understand")
    chunks = _chat(manager, model_id, 3, **params)
    assert chunks and all(isinstance(c, str) for c in chunks)
    assert _chat(manager, model_id, 3, **params) == chunks
    assert any(_chat(manager, model_id, seed, **params) != chunks for seed in (4, 5, 6))


@pytest.mark.parametrize("model_id", IDS)
def test_out_of_range_parameters_are_rejected_before_the_model(manager, tiny_catalog, model_id):
    spec = tiny_catalog.get(model_id)
    for capability, cap in spec.capabilities.items():
        bounded = next((p for p in cap.params if p.max is not None), None)
        if bounded is None:
            continue
        bad = {bounded.name: bounded.max + 1000}
        with pytest.raises(InputError, match=bounded.label or bounded.name):
            if capability == "generate":
                _generate(manager, model_id, 0, **bad)
            elif capability == "edit":
                _edit(manager, model_id, 0, **bad)
            else:
                _chat(manager, model_id, 0, **bad)
    assert manager.resident_id is None, "validation must happen before anything is loaded"


@pytest.mark.parametrize("model_id", IDS)
def test_cancel_stops_within_one_step(manager, tiny_catalog, model_id):
    spec = tiny_catalog.get(model_id)
    capability = next(c for c in ("generate", "edit", "understand") if spec.can(c))
    seen = []

    def progress(done, total, what):
        seen.append(done)
        if done == 1:
            control.cancel()

    control = RunControl(on_progress=progress)
    params = _small(spec, capability)
    with pytest.raises(CancelledError):
        if capability == "generate":
            manager.generate(model_id, GenerateRequest("x", params=params, seed=0), control)
        elif capability == "edit":
            image = Image.new("RGB", (32, 32))
            manager.edit(model_id, EditRequest([image], "x", params=params, seed=0), control)
        else:
            params["max_new_tokens"] = 50
            list(manager.understand(model_id, UnderstandRequest([Message("user", "x")], params, 0), control))
    assert len(seen) <= 2
    assert manager.resident_id == model_id  # the model stays; the lane is free
    assert manager._lane.acquire(timeout=1)
    manager._lane.release()
