"""Residency, swapping, memory release, host cache, missing weights and fault handling."""

from __future__ import annotations

import threading
import weakref

import numpy as np
import pytest

from umm.catalog import Catalog
from umm.errors import ModelLoadError, OutOfMemoryError, WeightsUnavailableError
from umm.manager import ModelManager
from umm.types import GenerateRequest


def _two_models(tiny_catalog: Catalog) -> Catalog:
    """Two distinct model ids (swap targets) even when only one family has a tiny checkpoint."""
    specs = list(tiny_catalog)
    if len(specs) < 2:
        specs.append(specs[0].replace(id=specs[0].id + "-b", name=specs[0].name + " B"))
    return Catalog(specs[:2])


def _run(manager: ModelManager, model_id: str, seed: int = 0):
    spec = manager.catalog.get(model_id)
    task = "generate" if spec.can("generate") else "edit"
    if task == "generate":
        params = {"num_images": 1} if any(p.name == "num_images" for p in spec.capability(task).params) else {}
        return manager.generate(model_id, GenerateRequest("a cat", params=params, seed=seed)).images[0]
    raise AssertionError("contract models used here generate")


def _model_weakrefs(adapter) -> list[weakref.ref]:
    return [weakref.ref(m) for m in adapter.modules()]


def test_one_model_resident_and_swapped_model_is_really_gone(tiny_catalog):
    catalog = _two_models(tiny_catalog)
    a, b = catalog.ids()
    manager = ModelManager(catalog, device="cpu")
    _run(manager, a)
    assert manager.resident_id == a
    refs = _model_weakrefs(manager._resident)
    _run(manager, b)  # no gc.collect() here: the manager's own clean-up must free the weights
    assert manager.resident_id == b
    assert all(r() is None for r in refs), "the unloaded model is still referenced somewhere"
    assert [e.action for e in manager.events] == ["load", "unload", "load"]
    assert manager.status(a) == "on disk" and manager.status(b) == "resident"


def test_swap_a_b_a_gives_the_same_output_as_a_alone(tiny_catalog):
    catalog = _two_models(tiny_catalog)
    a, b = catalog.ids()
    alone = np.asarray(_run(ModelManager(catalog, device="cpu"), a, seed=5))
    manager = ModelManager(catalog, device="cpu")
    _run(manager, a, seed=1)
    _run(manager, b, seed=1)
    assert np.array_equal(np.asarray(_run(manager, a, seed=5)), alone)


def test_host_cache_swaps_back_without_disk(tiny_catalog):
    catalog = _two_models(tiny_catalog)
    a, b = catalog.ids()
    manager = ModelManager(catalog, device="cpu", host_cache_bytes=10**9)
    _run(manager, a)
    _run(manager, b)
    assert manager.status(a) == "cached in RAM"
    _run(manager, a)
    assert [(e.model_id, e.action, e.source) for e in manager.events][-2:] == [
        (b, "to_host", "-"),
        (a, "from_host", "host cache"),
    ]


def test_host_cache_evicts_least_recent_by_bytes(tiny_catalog):
    catalog = _two_models(tiny_catalog)
    a, b = catalog.ids()
    manager = ModelManager(catalog, device="cpu", host_cache_bytes=1)  # too small for anything
    _run(manager, a)
    _run(manager, b)
    assert manager.status(a) == "on disk"


def test_missing_weights_give_one_clear_sentence(tiny_catalog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    spec = next(iter(tiny_catalog)).replace(id="remote", repo="example-org/not-cached-anywhere", revision="0" * 40)
    manager = ModelManager(Catalog([spec]), device="cpu")
    with pytest.raises(WeightsUnavailableError) as info:
        manager.load("remote")
    message = str(info.value)
    assert "example-org/not-cached-anywhere" in message and "hf download" in message and "HF_HOME" in message
    assert manager.resident_id is None
    assert manager.status("remote") == "not downloaded"


def test_oom_while_loading_leaves_nothing_resident(tiny_catalog):
    catalog = _two_models(tiny_catalog)
    a, b = catalog.ids()

    def hook(event, spec):
        if event == "load" and spec.id == b:
            raise __import__("torch").OutOfMemoryError("CUDA out of memory (injected)")

    manager = ModelManager(catalog, device="cpu", fault_hook=hook)
    _run(manager, a)
    with pytest.raises(OutOfMemoryError, match="Nothing was left loaded"):
        _run(manager, b)
    assert manager.resident_id is None
    manager.fault_hook = None
    _run(manager, b)
    assert manager.resident_id == b


def test_oom_while_generating_keeps_the_manager_usable(tiny_catalog):
    catalog = _two_models(tiny_catalog)
    a = catalog.ids()[0]
    calls = []

    def hook(event, spec):
        if event == "run" and not calls:
            calls.append(event)
            raise __import__("torch").OutOfMemoryError("CUDA out of memory (injected)")

    manager = ModelManager(catalog, device="cpu", fault_hook=hook)
    with pytest.raises(OutOfMemoryError, match="smaller size"):
        _run(manager, a)
    assert _run(manager, a) is not None


def test_corrupt_weights_mark_only_that_model_unavailable(tiny_catalog, tmp_path):
    import shutil

    good = next(iter(tiny_catalog))
    broken_dir = tmp_path / "broken"
    shutil.copytree(good.repo, broken_dir)
    for weights in broken_dir.rglob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    broken = good.replace(id="broken", repo=str(broken_dir))
    manager = ModelManager(Catalog([good, broken]), device="cpu")
    with pytest.raises(ModelLoadError):
        manager.load("broken")
    assert manager.status("broken").startswith("unavailable:")
    with pytest.raises(ModelLoadError, match="unavailable"):
        _run(manager, "broken")
    assert _run(manager, good.id) is not None


def test_pickle_only_checkpoints_are_refused(tiny_catalog, tmp_path):
    import shutil

    good = next(iter(tiny_catalog))
    pickled = tmp_path / "pickled"
    shutil.copytree(good.repo, pickled)
    for weights in pickled.rglob("*.safetensors"):
        weights.with_suffix(".bin").write_bytes(b"\x80\x04pickle")
        weights.unlink()
    manager = ModelManager(Catalog([good.replace(id="pickled", repo=str(pickled))]), device="cpu")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        manager.load("pickled")


def test_concurrent_requests_never_get_another_users_model(tiny_catalog):
    catalog = _two_models(tiny_catalog)
    a, b = catalog.ids()
    manager = ModelManager(catalog, device="cpu")
    results, errors = [], []

    def worker(model_id: str) -> None:
        try:
            for seed in range(3):
                spec = manager.catalog.get(model_id)
                params = {"num_images": 1} if spec.can("generate") else {}
                result = manager.generate(model_id, GenerateRequest("x", params=params, seed=seed))
                results.append((model_id, result.info.model_id))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(m,)) for m in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 12 and all(asked == got for asked, got in results)



def test_cli_fetch_offline_says_what_to_do(capsys, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from umm.cli import main

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    assert main(["fetch", "janus-pro-1b"]) == 2
    err = capsys.readouterr().err
    assert "deepseek-community/Janus-Pro-1B" in err and "python -m umm fetch janus-pro-1b" in err
