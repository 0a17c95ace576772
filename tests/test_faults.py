"""Failure matrix rows not covered by test_manager: time limit, adapter errors, disconnects, security."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import cheap_params, tiny_ids

from umm.catalog import Catalog
from umm.control import RunControl
from umm.errors import AdapterError, TimeLimitError
from umm.manager import ModelManager
from umm.types import GenerateRequest, Message, UnderstandRequest

ROOT = Path(__file__).resolve().parents[1]


def _first(tiny_catalog: Catalog, capability: str) -> str:
    return next(s.id for s in tiny_catalog if s.can(capability))


def _lane_free(manager: ModelManager) -> bool:
    if manager._lane.acquire(timeout=2):
        manager._lane.release()
        return True
    return False


def test_time_limit_aborts_cooperatively_and_the_next_request_works(tiny_catalog):
    model_id = _first(tiny_catalog, "generate")
    manager = ModelManager(tiny_catalog, device="cpu")
    request = GenerateRequest("a cat", params={"num_images": 1}, seed=0)
    with pytest.raises(TimeLimitError, match="limit"):
        manager.generate(model_id, request, RunControl(time_limit_s=0.0))
    assert _lane_free(manager)
    assert manager.generate(model_id, GenerateRequest("a cat", params={"num_images": 1}, seed=0)).images


def test_adapter_exception_becomes_a_clear_message(tiny_catalog):
    model_id = _first(tiny_catalog, "generate")
    failures = []

    def hook(event, spec):
        if event == "run" and not failures:
            failures.append(spec.id)
            raise RuntimeError("kaboom (injected)")

    manager = ModelManager(tiny_catalog, device="cpu", fault_hook=hook)
    with pytest.raises(AdapterError, match="failed: RuntimeError: kaboom"):
        manager.generate(model_id, GenerateRequest("a cat", params={"num_images": 1}, seed=0))
    assert manager.resident_id == model_id and _lane_free(manager)
    assert manager.generate(model_id, GenerateRequest("a cat", params={"num_images": 1}, seed=0)).images


def test_client_disconnect_mid_stream_frees_the_lane(tiny_catalog):
    model_id = _first(tiny_catalog, "understand")
    manager = ModelManager(tiny_catalog, device="cpu")
    control = RunControl()
    params = {"max_new_tokens": 200, "temperature": 1.0}
    stream = manager.understand(model_id, UnderstandRequest([Message("user", "hello")], params, 0), control)
    next(stream)
    stream.close()  # what a server does when the client goes away
    assert control.cancelled and control.steps < 200
    assert _lane_free(manager)


def test_every_hub_entry_pins_a_revision(real_catalog):
    for spec in real_catalog:
        if spec.is_local:  # a folder of this repository (assets/...): versioned with the code
            continue
        assert spec.revision, f"{spec.id} does not pin a revision"


def test_no_remote_code_and_safetensors_only():
    sources = {p: p.read_text() for p in (ROOT / "umm").rglob("*.py")}
    assert not [p for p, text in sources.items() if "trust_remote_code=True" in text]
    for path, text in sources.items():
        for call in re.finditer(r"(\w+)\.from_pretrained\(", text):
            cls = call.group(1)
            if cls.endswith(("Processor", "Tokenizer", "TokenizerFast", "Config", "Scheduler")):
                continue  # no weights in these
            window = text[call.end() : call.end() + 400]
            assert "pretrained_kwargs()" in window or "use_safetensors=True" in window, (
                f"{path.name}: {cls}.from_pretrained must load safetensors only"
            )


def test_too_many_input_images_are_refused_before_anything_loads(tiny_catalog):
    from PIL import Image

    from umm.errors import InputError
    from umm.types import EditRequest

    editors = [s for s in tiny_catalog if s.can("edit") and s.capability("edit").max_images]
    if not editors:
        pytest.skip("no tiny model declares an input-image limit for edits")
    spec = editors[0]
    manager = ModelManager(tiny_catalog, device="cpu")
    images = [Image.new("RGB", (32, 32))] * (spec.capability("edit").max_images + 1)
    with pytest.raises(InputError, match="at most"):
        manager.edit(spec.id, EditRequest(images, "make it blue", seed=0))
    assert manager.resident_id is None


@pytest.mark.parametrize("model_id", tiny_ids())
def test_oom_in_the_middle_of_generation_is_cleaned_up(tiny_catalog, model_id):
    """The progress hook (called by the adapter once per token/step) raises OOM at step 2."""
    import torch

    from umm.errors import OutOfMemoryError

    if not tiny_catalog.get(model_id).can("generate"):
        pytest.skip(f"{model_id} does not generate")
    manager = ModelManager(tiny_catalog, device="cpu")
    steps = []

    def explode(done, total, what):
        steps.append(done)
        if done == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected mid-generation)")

    params = cheap_params(tiny_catalog.get(model_id), "generate", steps=3)
    params = {k: v for k, v in params.items() if k in tiny_catalog.get(model_id).capability("generate").defaults()}
    with pytest.raises(OutOfMemoryError, match=r"smaller size|fewer images"):
        manager.generate(model_id, GenerateRequest("a cat", params=params, seed=0), RunControl(on_progress=explode))
    assert steps == [1, 2] and _lane_free(manager) and manager.resident_id == model_id
    assert manager.generate(model_id, GenerateRequest("a cat", params=params, seed=0)).images
