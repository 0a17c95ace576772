"""The Show-o2 adapter on its tiny twin: official layout, the convert step, chat and text-to-image behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from umm.catalog import parse_spec
from umm.control import RunControl
from umm.errors import CancelledError, InputError, ModelLoadError
from umm.types import GenerateRequest, Message, UnderstandRequest

IDS = ("showo2-1.5b", "showo2-1.5b-hq", "showo2-7b")


@pytest.fixture(scope="module")
def tiny(tiny_catalog):
    return tiny_catalog.get("tiny-showo2")


@pytest.fixture(scope="module")
def adapter(tiny):
    from umm.adapters.showo2 import Showo2Adapter

    adapter = Showo2Adapter(tiny)
    adapter.load(torch.device("cpu"), torch.float32)
    return adapter


def test_three_entries_share_one_adapter_with_official_defaults(real_catalog):
    specs = {spec.id: spec for spec in real_catalog if spec.family == "showo2"}
    assert set(specs) == set(IDS)
    for model_id, spec in specs.items():
        gen = spec.capability("generate").defaults()
        size = 1024 if model_id.endswith("hq") else 432
        assert (gen["guidance_scale"], gen["steps"], gen["width"], gen["height"]) == (7.5, 50, size, size)
        und = spec.capability("understand").defaults()
        assert (und["max_new_tokens"], und["temperature"]) == (300, 0.0)  # the demo: greedy, 300 tokens
        assert spec.convert and spec.convert[0].file == "pytorch_model.bin"
        assert set(spec.components) == {"llm", "siglip", "vae"} and spec.components["vae"].allow == ("vae/*",)
        assert spec.options["max_text_len"] == (251 if model_id.endswith("hq") else 290)
    assert specs["showo2-7b"].components["llm"].repo == "Qwen/Qwen2.5-7B-Instruct"
    assert specs["showo2-7b"].weight_bytes > 2.5 * specs["showo2-1.5b"].weight_bytes


def test_tiny_twin_has_the_official_layout(tiny):
    root = Path(tiny.repo)
    assert (root / "pytorch_model.bin").is_file() and (root / "pytorch_model.safetensors").is_file()
    config = json.loads((root / "config.json").read_text())
    assert config["_class_name"] == "Showo2Qwen2_5" and config["llm_model_path"].startswith("Qwen/")
    assert (root / "llm" / "config.json").is_file() and (root / "llm" / "tokenizer.json").is_file()
    assert "vision_config" in json.loads((root / "siglip" / "config.json").read_text())
    vae = json.loads((root / "vae" / "vae" / "config.json").read_text())
    assert vae["_class_name"] == "AutoencoderKLWan" and vae["z_dim"] == 16


def test_unconverted_pickle_names_the_convert_command(tiny, tmp_path):
    import shutil

    from umm.adapters.showo2 import Showo2Adapter

    copy = tmp_path / "model"
    shutil.copytree(tiny.repo, copy)
    (copy / "pytorch_model.safetensors").unlink()
    spec = tiny.replace(repo=str(copy))
    with pytest.raises(ModelLoadError, match=f"python -m umm convert {spec.id}"):
        Showo2Adapter(spec).load(torch.device("cpu"), torch.float32)


def test_fetch_downloads_only_the_listed_component_files(real_catalog, monkeypatch):
    from umm import hub

    calls = []
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(hub, "download_repo", lambda repo, **kw: calls.append((repo, kw)) or repo)
    monkeypatch.setattr(hub, "download_file", lambda repo, file, **kw: calls.append((repo, file)))
    hub.fetch(real_catalog.get("showo2-1.5b"))
    patterns = {call[0]: call[1].get("allow_patterns") for call in calls if isinstance(call[1], dict)}
    assert patterns["showlab/show-o2-1.5B"] is None  # the whole model repo (pickles skipped, then fetched by name)
    assert patterns["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"] == ["vae/*"]
    assert patterns["google/siglip-so400m-patch14-384"] == ["config.json"]
    assert ("showlab/show-o2-1.5B", "pytorch_model.bin") in calls
    with pytest.raises(Exception, match="allow must be a list"):
        parse_spec({"id": "m", "name": "M", "family": "showo2", "repo": "o/m", "dtype": "float32",
                    "license": "x", "weight_bytes": 1, "capabilities": {"generate": {}},
                    "components": {"vae": {"repo": "o/v", "allow": "vae/*"}}})


def test_understanding_uses_the_table_size_and_streams_tokens(adapter):
    assert adapter.understanding_size == 64  # 4x4 table · patch 2 · VAE 8 (432 px for the real models)
    steps = []
    control = RunControl(on_progress=lambda done, total, what: steps.append((done, total, what)))
    image = Image.new("RGB", (90, 60), (200, 40, 40))
    request = UnderstandRequest([Message("user", "What is this?", [image])], {"max_new_tokens": 6}, seed=1)
    text = "".join(adapter.understand(request, control))
    assert isinstance(text, str)
    assert steps and all(what == "tokens" and total == 6 for _, total, what in steps)
    assert len(steps) <= 6
    again = "".join(adapter.understand(request, RunControl()))
    assert again == text  # greedy, and the posterior sample is seeded


def test_understanding_takes_the_image_in_a_later_turn(adapter):
    from umm.ports.showo2 import understanding_sequence

    image = Image.new("RGB", (32, 32))
    messages = [Message("user", "hi"), Message("assistant", "hello"), Message("user", "and this?", [image])]
    chunks = list(adapter.understand(UnderstandRequest(messages, {"max_new_tokens": 2}, seed=0), RunControl()))
    assert all(isinstance(c, str) for c in chunks)
    turns = [(m.role, m.text) for m in messages]
    seq, block = understanding_sequence(adapter.tokenizer, adapter.ids, turns, 16, image_turn=2)
    assert seq[block[0] - 2] == adapter.ids.boi and seq[block[0] + 16] == adapter.ids.eoi
    assert seq.count(adapter.ids.eos) == 2  # the system string and the assistant turn; none after the question
    with pytest.raises(InputError, match="user message"):
        bad = [Message("user", "hi"), Message("assistant", "look", [image])]
        list(adapter.understand(UnderstandRequest(bad, {"max_new_tokens": 2}), RunControl()))


def test_generation_progress_count_seed_and_cancel(adapter):
    steps = []
    control = RunControl(on_progress=lambda done, total, what: steps.append((done, total)))
    params = {"width": 80, "height": 64, "steps": 4, "num_images": 2, "guidance_scale": 7.5}
    result = adapter.generate(GenerateRequest("a red cube", params=params, seed=5), control)
    assert len(result.images) == 2 and result.images[0].size == (80, 64)
    assert steps == [(1, 3), (2, 3), (3, 3)]  # S grid points = S - 1 evaluations
    a, b = (np.asarray(im) for im in result.images)
    assert not np.array_equal(a, b)  # N images are N separate samples
    again = adapter.generate(GenerateRequest("a red cube", params=params, seed=5), RunControl())
    assert np.array_equal(np.asarray(again.images[0]), a)
    unguided = {**params, "guidance_scale": 0.0}
    unguided = adapter.generate(GenerateRequest("a red cube", params=unguided, seed=5), RunControl())
    assert not np.array_equal(np.asarray(unguided.images[0]), a)

    def stop(done, total, what):
        control.cancel()

    control = RunControl(on_progress=stop)
    with pytest.raises(CancelledError):
        adapter.generate(GenerateRequest("x", params=params, seed=0), control)
    with pytest.raises(InputError, match="multiples of 16"):
        adapter.generate(GenerateRequest("x", params={**params, "width": 72}, seed=0), RunControl())


def test_vae_latents_are_normalised_with_the_wan_constants(adapter):
    """encode: (mu - m) / sigma + std * eps; decode inverts the normalisation (diffusers' latents_mean/std)."""
    config = adapter.vae.config
    assert config.latents_mean[0] == -0.7571 and config.latents_std[0] == 2.8184
    image = Image.new("RGB", (64, 64), (10, 200, 90))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = adapter.encode_image(image, 64, generator)
        from umm.adapters.showo2 import center_crop

        posterior = adapter.vae.encode(center_crop(image, 64)[:, :, None]).latent_dist
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1)
        noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(0))[:, :, 0]
        expected = (posterior.mean[:, :, 0] - mean) / std + posterior.std[:, :, 0] * noise
    assert z.shape == (1, 16, 8, 8)
    assert torch.allclose(z, expected, atol=1e-5)
