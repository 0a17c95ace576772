"""JanusFlow adapter: official layout, full-size names/shapes against upstream, tiny-twin behaviour.

Full-size check: ``tests/data/janusflow_names_shapes.json`` holds the names and shapes of upstream's
``MultiModalityCausalLM`` (deepseek-ai/Janus @ 1daa72fa409002d40931bd7b36a9280362469ead,
``janus/janusflow/models``) built on the meta device at ``tests/data/janusflow_config.json``. That
config.json could not be read offline; its ShallowUViT settings (kernel 2, stride 2, 1 upsample,
2 ConvNeXt blocks, width 768) are confirmed by (a) shapes: upstream hard-codes width 768 in its aligners
and demo reshape, a 48x48 latent must become a 24x24 grid (576 tokens) and come back as 48x48, which
allows exactly one 2x Unpatchify and, with padding ``ceil(k - s)``, kernel 2 / stride 2; (b) the paper's
"2x2 patchify layer, two ConvNeXt blocks" encoder / "two ConvNeXt blocks, pixel shuffle" decoder; and
(c) size: at this config upstream has 2,046,367,504 parameters = 4.09 GB in bf16, the size of the hub's
single model.safetensors; a third ConvNeXt block per side would add 33M parameters (4.16 GB), one
fewer would give 4.03 GB.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cheap_params
from PIL import Image

from umm.control import RunControl
from umm.types import GenerateRequest, Message, UnderstandRequest

DATA = Path(__file__).parent / "data"
ID = "tiny-janusflow"


def test_full_size_names_and_shapes_equal_upstream():
    from accelerate import init_empty_weights

    from umm.ports.janusflow import JanusFlowConfig, JanusFlowModel, port_to_original

    upstream = json.loads((DATA / "janusflow_names_shapes.json").read_text(encoding="utf-8"))
    config = JanusFlowConfig.from_file(DATA / "janusflow_config.json")
    with init_empty_weights():
        model = JanusFlowModel(config)
    ours = {k: list(v.shape) for k, v in port_to_original(model.state_dict()).items()}
    expected = {k: v for k, v in upstream["names_shapes"].items() if ".vision_tower.attn_pool." not in k}
    assert ours == expected
    pooling = sum(int(np.prod(v)) for k, v in upstream["names_shapes"].items() if ".attn_pool." in k)
    assert sum(p.numel() for p in model.parameters()) + pooling == upstream["params"]
    assert model.vision_gen_enc_model.in_conv.weight.shape == (768, 4, 2, 2)


@pytest.fixture(scope="module")
def tiny_dir(tiny_catalog):
    return Path(tiny_catalog.get(ID).repo)


def test_the_tiny_checkpoint_is_in_the_official_layout(tiny_dir):
    from safetensors import safe_open

    assert {p.name for p in tiny_dir.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "preprocessor_config.json", "vae",
    }
    config = json.loads((tiny_dir / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "multi_modality"
    assert config["vision_gen_enc_config"]["cls"] == "ShallowUViTEncoder"
    with safe_open(tiny_dir / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "beg_of_und_embed" in keys and "vision_gen_dec_aligner_norm.weight" in keys
    assert "vision_und_enc_model.vision_tower.blocks.0.attn.qkv.weight" in keys
    assert "vision_und_enc_model.vision_tower.attn_pool.latent" in keys  # dropped on load, like the real one
    assert (tiny_dir / "vae" / "config.json").is_file()
    assert (tiny_dir / "vae" / "diffusion_pytorch_model.safetensors").is_file()


def test_generation_makes_n_images_with_progress_per_step(manager, tiny_catalog):
    spec = tiny_catalog.get(ID)
    seen = []
    params = cheap_params(spec, "generate", num_images=3, steps=2)
    result = manager.generate(ID, GenerateRequest("a red cube", params=params, seed=5),
                              RunControl(on_progress=lambda done, total, what: seen.append((done, total, what))))
    assert len(result.images) == 3 and len({im.tobytes() for im in result.images}) == 3
    assert [s for s in seen if s[2] == "steps"] == [(1, 2, "steps"), (2, 2, "steps")]
    upscaled = manager.generate(ID, GenerateRequest("a red cube", params={**params, "upscale": True}, seed=5))
    assert upscaled.images[0].size == (1024, 1024)
    assert result.images[0].size == (96, 96)  # 48x48 latent through the tiny 2x VAE


def test_the_prompt_cache_gives_the_recomputed_result(manager, tiny_catalog):
    from umm.ports.janusflow import sample
    from umm.ports.janusflow.processing import generation_prompt

    with manager.lane(ID) as adapter:
        ids = torch.tensor(adapter.tokenizer(generation_prompt("a dog in the rain"))["input_ids"])
        noise = torch.randn((2, 4, 48, 48), generator=torch.Generator().manual_seed(0))
        cached = sample(adapter.model, ids, noise, steps=3, cfg_weight=2.0, pad_id=adapter.pad_id)
        full = sample(adapter.model, ids, noise, steps=3, cfg_weight=2.0, pad_id=adapter.pad_id, use_cache=False)
    assert (cached - full).abs().max() < 1e-4
    assert (cached - noise).abs().max() > 1e-3


def test_chat_sees_the_image_and_follows_the_seed(manager, tiny_catalog):
    spec = tiny_catalog.get(ID)
    params = cheap_params(spec, "understand", temperature=0.0, max_new_tokens=6)
    red, blue = Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (40, 30), (20, 20, 220))

    def reply(image, text="What is in this picture?"):
        messages = [Message("user", text, [image] if image else [])]
        return "".join(manager.understand(ID, UnderstandRequest(messages, params=params, seed=1)))

    assert reply(red) == reply(red)
    assert reply(None)  # text-only chat works too
    assert reply(None, "a typed <image_placeholder> asks for no image")
    with manager.lane(ID) as adapter, torch.inference_mode():
        a = adapter.chat_inputs([Message("user", "hi", [red])])["inputs_embeds"]
        b = adapter.chat_inputs([Message("user", "hi", [blue])])["inputs_embeds"]
        begin = adapter.model.beg_of_und_embed[0]
        tokens = adapter.model.config.num_image_tokens
    assert int((a[0] == begin).all(-1).sum()) == 1  # BOI's row is beg_of_und_embed
    differs = (a[0] != b[0]).any(-1)
    assert int(differs.sum()) == tokens  # the pixels reach exactly the image rows


@pytest.mark.slow  # ~5 s alone (gradio import + launch); run with -m slow
def test_chat_and_text_to_image_tabs_of_the_app(manager):
    """The twin through the web app's Chat and Text -> image endpoints (test_app covers only the first twin)."""
    pytest.importorskip("gradio")
    from conftest import served_app
    from gradio_client import Client, handle_file

    assets = Path(__file__).resolve().parents[1] / "assets"
    with served_app(manager) as app:
        client = Client(app.local_url, verbose=False)
        history = client.predict(
            model_id=ID, message={"text": "What is in this picture?", "files": [handle_file(assets / "cat.png")]},
            history=[], seed=1, max_new_tokens=6, api_name="/chat",
        )[0]
        assert [m["role"] for m in history] == ["user", "assistant"]
        gallery, _summary, settings, _snippet, _files = client.predict(
            model_id=ID, prompt="a cat on a red chair", seed=7, num_images=2, steps=1, upscale=False,
            api_name="/generate",
        )
        assert len(gallery) == 2 and settings["seed"] == 7
        assert settings["params"]["steps"] == 1 and settings["params"]["upscale"] is False


def test_kv_cache_benchmark_runs_and_agrees(tmp_path):
    """bench/janusflow_kv_cache.py in its quick mode: it writes its record and both paths agree."""
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench"
    sys.path.insert(0, str(bench))
    try:
        import janusflow_kv_cache
    finally:
        sys.path.remove(str(bench))
    threads = torch.get_num_threads()
    record = janusflow_kv_cache.main(["--quick", "--out-dir", str(tmp_path)])
    assert torch.is_grad_enabled() and torch.get_num_threads() == threads  # no global state leaks
    written = json.loads((tmp_path / "janusflow_kv_cache.json").read_text())
    assert written["benchmark"] == "janusflow_kv_cache"
    result = record["sizes"]["tiny"]["prompts"]["16"]
    assert result["max_abs_diff_final_latents"] < 1e-4 and result["speedup_cpu"] > 0
