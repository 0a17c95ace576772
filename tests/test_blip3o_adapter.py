"""BLIP3o-NEXT adapter on its tiny twin: layout, skipped keys, weight sources, progress, cancel, N images.

The generic contract (types, seeds, validation, cancel at step 1) runs in test_contract.py.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from umm.adapters.blip3o import SANA, Blip3oAdapter
from umm.catalog import Component
from umm.control import RunControl
from umm.errors import CancelledError
from umm.types import GenerateRequest

FAST = {"steps": 2, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def adapter(tiny_catalog) -> Blip3oAdapter:
    adapter = Blip3oAdapter(tiny_catalog.get("tiny-blip3o"))
    adapter.load(torch.device("cpu"), torch.float32)
    yield adapter
    adapter.unload()


def _generate(adapter, seed=0, control=None, prompt="a red cube", **params):
    return adapter.generate(GenerateRequest(prompt, params={**FAST, **params}, seed=seed), control or RunControl())


def _px(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _weight_map(root: Path) -> dict[str, str]:
    return json.loads((root / "model.safetensors.index.json").read_text())["weight_map"]


def test_twin_has_the_official_layout(adapter):
    root = Path(adapter.spec.repo)
    config = json.loads((root / "config.json").read_text())
    assert config["model_type"] == "blip3o_qwen_inference" and config["tie_word_embeddings"]
    keys = _weight_map(root)
    assert len(set(keys.values())) >= 2 and "lm_head.weight" not in keys
    prefixes = ("model.layers.", "model.diffusion_connector.", "model.sana.", "model.sana_vae.", "model.vision_tower.")
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in keys), prefix
    for part in ("transformer/config.json", "vae/config.json", "scheduler/scheduler_config.json"):
        assert (Path(adapter.spec.part(SANA).repo) / part).is_file()
    tok = adapter.tokenizer
    assert tok.convert_tokens_to_ids("<im_start>") == adapter.lm.config.image_start_tag_id
    assert tok.convert_tokens_to_ids("<I0>") == adapter.lm.config.image_start_token_id
    assert adapter.sana.config.caption_channels == adapter.connector[0].out_features
    assert adapter.connector[0].in_features == adapter.lm.config.hidden_size


def test_vision_tower_and_head_keys_are_skipped_without_an_unexpected_keys_report(adapter, caplog):
    from umm.ports.blip3o import Blip3oLanguageModel, language_config

    root = adapter.spec.repo
    with caplog.at_level(logging.INFO):
        lm, info = Blip3oLanguageModel.from_pretrained(
            root, config=language_config(root), dtype=torch.float32, output_loading_info=True
        )
    assert info["unexpected_keys"] == set() or not info["unexpected_keys"]
    assert not info["missing_keys"]
    assert not any("unexpected" in r.getMessage().lower() or "vision_tower" in r.getMessage() for r in caplog.records)
    assert not any(name.startswith("model.vision_tower") for name, _ in lm.named_parameters())


def test_checkpoint_weights_win_over_the_sana_repo(adapter):
    from safetensors.torch import load_file

    main = Path(adapter.spec.repo)
    shard = main / _weight_map(main)["model.sana.proj_out.weight"]
    expected = load_file(shard)["model.sana.proj_out.weight"]
    repo_own = load_file(Path(adapter.spec.part(SANA).repo) / "transformer" / "diffusion_pytorch_model.safetensors")
    assert not torch.equal(repo_own["proj_out.weight"], expected)
    assert torch.equal(adapter.sana.proj_out.weight, expected)


def test_missing_decoder_weights_come_from_the_sana_repo(adapter, tmp_path):
    """A checkpoint without ``model.sana_vae.*`` (upstream would keep the SANA repo's DC-AE) still loads."""
    from safetensors.torch import load_file, save_file

    main = Path(adapter.spec.repo)
    copy = tmp_path / "main"
    shutil.copytree(main, copy, ignore=shutil.ignore_patterns(SANA))
    index = json.loads((copy / "model.safetensors.index.json").read_text())
    for name in set(index["weight_map"].values()):
        state = load_file(copy / name)
        save_file({k: v for k, v in state.items() if not k.startswith("model.sana_vae.")}, copy / name,
                  metadata={"format": "pt"})
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not k.startswith("model.sana_vae.")}
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    spec = adapter.spec.replace(repo=str(copy), components={SANA: Component(adapter.spec.part(SANA).repo)})
    other = Blip3oAdapter(spec)
    other.load(torch.device("cpu"), torch.float32)
    repo_vae = load_file(Path(spec.part(SANA).repo) / "vae" / "diffusion_pytorch_model.safetensors")
    assert torch.equal(other.vae.decoder.conv_out.weight, repo_vae["decoder.conv_out.weight"])
    assert torch.equal(other.sana.proj_out.weight, adapter.sana.proj_out.weight)


def test_progress_is_one_bar_over_tokens_then_steps(adapter):
    seen = []
    control = RunControl(on_progress=lambda done, total, what: seen.append((done, total, what)))
    _generate(adapter, control=control)
    total = FAST["max_new_tokens"] + FAST["steps"]
    assert {t for _, t, _ in seen} == {total}
    assert [d for d, _, _ in seen] == list(range(1, total + 1))
    assert [w for _, _, w in seen] == ["tokens"] * FAST["max_new_tokens"] + ["steps"] * FAST["steps"]


@pytest.mark.parametrize("stop_at", [3, FAST["max_new_tokens"] + 1])  # in the AR stage, in the diffusion stage
def test_cancel_stops_in_either_stage(adapter, stop_at):
    seen = []

    def progress(done, total, what):
        seen.append(done)
        if done == stop_at:
            control.cancel()

    control = RunControl(on_progress=progress)
    with pytest.raises(CancelledError):
        _generate(adapter, control=control)
    assert seen[-1] == stop_at
    _generate(adapter)  # the next request works


def test_n_images_are_separate_and_deterministic_per_seed(adapter):
    first = _generate(adapter, seed=5, num_images=3)
    again = _generate(adapter, seed=5, num_images=3)
    assert len(first.images) == 3 and all(im.size == (64, 64) for im in first.images)
    assert all(np.array_equal(_px(a), _px(b)) for a, b in zip(first.images, again.images, strict=True))
    assert not np.array_equal(_px(first.images[0]), _px(first.images[1]))
    # the rows share one generator, so determinism is per (seed, N)
    assert first.info.seed == 5 and first.info.params["num_images"] == 3


def test_greedy_and_guidance_one_paths(adapter):
    a = _generate(adapter, seed=1, temperature=0.0, guidance_scale=1.0)
    b = _generate(adapter, seed=2, temperature=0.0, guidance_scale=1.0)
    assert a.images[0].size == (64, 64)
    assert not np.array_equal(_px(a.images[0]), _px(b.images[0]))  # same tokens, other noise


def test_rows_that_stop_early_get_a_key_mask(adapter):
    from umm.ports.blip3o import conditioning, sample_image_tokens

    ids = adapter.tokenizer(["<im_start><S0>"], return_tensors="pt")["input_ids"].repeat(2, 1)
    length = ids.shape[1]

    def run(seed, eos=()):
        generator = torch.Generator().manual_seed(seed)
        return sample_image_tokens(
            adapter.lm, ids, max_new_tokens=4, top_k=0, top_p=1.0, generator=generator, eos_token_ids=eos,
            pad_token_id=adapter.pad_token_id,
        )

    # a seed whose first draws differ between the rows and do not recur in row 1
    seed = next(s for s in range(50) if int(run(s)[0][0, length]) not in run(s)[0][1, length:].tolist())
    stop = int(run(seed)[0][0, length])  # replayed with row 0's first token as EOS: row 0 stops at once
    gen_ids, counts = run(seed, [stop])
    assert counts == [1, 4] and gen_ids.shape[1] == length + 4
    assert (gen_ids[0, length + 1:] == adapter.pad_token_id).all()
    cond, mask = conditioning(adapter.lm, gen_ids, counts)
    assert cond.shape[:2] == (2, 5)
    assert mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_fetch_takes_only_the_allowed_files_of_a_component(real_catalog, monkeypatch):
    """The SANA repo is read for configs (and a fallback DC-AE): `umm fetch` skips its 5 GB text encoder."""
    from umm import hub
    from umm.catalog import parse_spec
    from umm.errors import CatalogError

    calls = []
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(hub, "download_repo", lambda repo, **kw: calls.append((repo, kw)) or repo)
    spec = real_catalog.get("blip3o-next-sft-3b")
    hub.fetch(spec)
    kwargs = dict(calls)
    assert kwargs[spec.repo]["allow_patterns"] is None  # the main repo: everything but pickles
    allow = kwargs[spec.part(SANA).repo]["allow_patterns"]
    assert "scheduler/*" in allow and "vae/*" in allow and not any("text_encoder" in a for a in allow)
    assert kwargs[spec.part(SANA).repo]["revision"] == spec.part(SANA).revision
    base = {"id": "x", "name": "x", "family": "blip3o", "repo": "o/x", "dtype": "bfloat16", "license": "x",
            "weight_bytes": 1, "capabilities": {"generate": {}}}
    with pytest.raises(CatalogError, match="allow must be a list"):
        parse_spec({**base, "components": {"sana": {"repo": "o/s", "allow": "vae/*"}}})


def test_a_prompt_that_names_the_image_tags_still_conditions_on_the_sampled_span(adapter):
    """Upstream would start at the prompt's own <im_start>; the span here is fixed by the lengths."""
    from umm.ports.blip3o import conditioning, prompt_text, sample_image_tokens

    tok, lm = adapter.tokenizer, adapter.lm
    ids = tok([prompt_text(tok, "a sign that reads <im_start><S1>", 0)], return_tensors="pt")["input_ids"]
    assert int((ids == lm.config.image_start_tag_id).sum()) == 2
    gen_ids, counts = sample_image_tokens(
        lm, ids, max_new_tokens=3, top_k=0, top_p=1.0, generator=torch.Generator().manual_seed(0)
    )
    cond, _ = conditioning(lm, gen_ids, counts)
    with torch.inference_mode():
        hidden = lm.model(input_ids=gen_ids).last_hidden_state
    assert int(gen_ids[0, ids.shape[1] - 1]) == lm.config.scale_start_token_id  # <S0>, the sampled span's head
    torch.testing.assert_close(cond[0], hidden[0, ids.shape[1] - 1:], rtol=0, atol=0)
