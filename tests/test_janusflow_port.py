"""JanusFlow port: golden parity with upstream (deepseek-ai/Janus @ 1daa72fa, janus/janusflow) and behaviour.

The golden data (../shared/golden/janusflow) holds tiny random weights in the official naming, inputs
and upstream's outputs; they load here through the port's own loader (``load_model``).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SHARED

from umm.ports.janusflow import load_model, sample
from umm.ports.janusflow.processing import (
    expand_image_tokens,
    format_conversation,
    generation_prompt,
    special_ids,
)

GOLDEN = SHARED / "golden" / "janusflow"
TOL = 1e-4

needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason="../shared/golden/janusflow is not checked out")


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    meta = json.loads((GOLDEN / "meta.json").read_text(encoding="utf-8"))
    model = load_model(GOLDEN / "model", siglip_models=meta["siglip_table_entry"])
    cases = {name: load_file(GOLDEN / f"case_{name}.safetensors") for name in ("components", "t2i_sampling",
                                                                              "understanding")}
    return meta, model, cases


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import PreTrainedTokenizerFast

    from umm.adapters.janus_v1 import ensure_bos

    tok = PreTrainedTokenizerFast.from_pretrained(GOLDEN / "tokenizer")
    ensure_bos(tok)
    return tok


def _close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    assert actual.shape == expected.shape, name
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= TOL, f"{name}: max abs diff {diff:.3g} > {TOL}"


@needs_golden
def test_every_official_key_loads_and_only_the_pooling_head_is_dropped(golden):
    meta, model, _ = golden
    from umm.ports.janusflow import port_to_original

    names = set(port_to_original(model.state_dict()))
    dropped = set(meta["state_dict_keys"]) - names
    assert names <= set(meta["state_dict_keys"])
    assert dropped and all(".vision_tower.attn_pool." in k for k in dropped)


@needs_golden
def test_components_match_upstream(golden):
    _, model, cases = golden
    c = cases["components"]
    with torch.no_grad():
        enc = model.vision_gen_enc_model
        proj = enc.time_proj(c["time_timesteps"])
        _close(proj, c["time_proj"], "time_proj")
        _close(enc.time_embed(proj), c["time_embed"], "time_embed")
        x_emb, t_emb, hs = enc(c["genenc_latents"], c["genenc_timesteps"])
        _close(x_emb, c["genenc_x_emb"], "genenc_x_emb")
        _close(t_emb, c["genenc_t_emb"], "genenc_t_emb")
        assert len(hs) == 1 and hs[0] is x_emb
        _close(model.vision_gen_enc_aligner(c["genaligner_in"]), c["genaligner_out"], "genaligner_out")
        normed = model.vision_gen_dec_aligner_norm(c["decaligner_in"])
        _close(normed, c["decaligner_normed"], "decaligner_normed")
        _close(model.vision_gen_dec_aligner(normed), c["decaligner_out"], "decaligner_out")
        velocity = model.vision_gen_dec_model(c["gendec_x"], [c["gendec_skip"]], c["gendec_t_emb"])
        _close(velocity, c["gendec_velocity"], "gendec_velocity")
        features = model.vision_und_enc_model(c["vision_pixel_values"]).last_hidden_state
        _close(features, c["vision_features"], "vision_features")
        _close(model.vision_und_enc_aligner(c["undaligner_in"]), c["undaligner_out"], "undaligner_out")


@needs_golden
@pytest.mark.parametrize("use_cache", [True, False], ids=["prompt-kv-cache", "recompute"])
def test_rectified_flow_trace_matches_upstream(golden, tokenizer, use_cache):
    meta, model, cases = golden
    s = cases["t2i_sampling"]
    ids = torch.tensor(tokenizer(generation_prompt(meta["config"]["t2i_prompt"]))["input_ids"])
    assert torch.equal(ids, s["input_ids"])
    trace: dict[str, torch.Tensor] = {}
    seen = []
    final = sample(
        model, ids, s["init_latents"], steps=len(s["timesteps"]), cfg_weight=float(s["cfg_weight"]),
        pad_id=tokenizer.pad_token_id, use_cache=use_cache, trace=trace, on_step=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert torch.equal(trace.pop("attention_mask"), s["attention_mask"])
    compared = 0
    for name, tensor in trace.items():
        _close(tensor, s[name], name)
        compared += 1
    assert compared == 21 + (0 if use_cache else 1)
    _close(final, s["final_latents"], "final_latents")


@needs_golden
def test_understanding_matches_upstream(golden, tokenizer):
    from PIL import Image
    from transformers import JanusImageProcessorPil

    meta, model, cases = golden
    u = cases["understanding"]
    text = format_conversation([("user", f"<image_placeholder>\n{meta['config']['und_question']}")])
    assert text == meta["und_text"]
    ids, mask = expand_image_tokens(torch.tensor(tokenizer(text)["input_ids"]), special_ids(tokenizer),
                                    meta["num_und_image_tokens"])
    assert torch.equal(ids, u["input_ids"][0]) and torch.equal(mask, u["images_seq_mask"][0])
    pre = meta["image_processor"]
    size = pre["image_size"]
    processor = JanusImageProcessorPil(
        size={"height": size, "width": size}, min_size=pre["min_size"], image_mean=pre["image_mean"],
        image_std=pre["image_std"],
    )
    pixels = processor(Image.fromarray(u["image_uint8"].numpy()), return_tensors="pt")["pixel_values"]
    _close(pixels, u["pixel_values"][0], "pixel_values")
    with torch.no_grad():
        _close(model.image_embeds(u["pixel_values"][0])[:, 1:], u["image_embeds_aligned"], "image_embeds_aligned")
        embeds = model.prepare_inputs_embeds(ids[None], u["pixel_values"], mask[None])
        _close(embeds, u["inputs_embeds"], "inputs_embeds")
        logits = model.language_model(inputs_embeds=embeds, attention_mask=u["attention_mask"]).logits
        _close(logits, u["logits"], "logits")
        tokens = model.language_model.generate(
            inputs_embeds=embeds, attention_mask=u["attention_mask"], do_sample=False,
            max_new_tokens=u["greedy_tokens"].shape[1], pad_token_id=tokenizer.eos_token_id,
        )
    assert torch.equal(tokens, u["greedy_tokens"])


@needs_golden
def test_guidance_changes_the_result(golden, tokenizer):
    """CFG reaches the latents (0.77 max abs change on the golden trace per its README)."""
    _, model, cases = golden
    s = cases["t2i_sampling"]
    ids = s["input_ids"]
    guided = sample(model, ids, s["init_latents"], steps=3, cfg_weight=2.0, pad_id=tokenizer.pad_token_id)
    plain = sample(model, ids, s["init_latents"], steps=3, cfg_weight=1.0, pad_id=tokenizer.pad_token_id)
    assert (guided - plain).abs().max() > 0.1


def test_expansion_and_format_on_other_sizes():
    ids = {"image": 3, "boi": 4, "eoi": 5, "gen": 6}
    expanded, mask = expand_image_tokens(torch.tensor([0, 7, 3, 8, 3, 9]), ids, 2)
    assert expanded.tolist() == [0, 7, 4, 3, 3, 5, 8, 4, 3, 3, 5, 9]
    assert mask.tolist() == [False, False, True, True, True, False, False, True, True, True, False, False]
    text = format_conversation([("user", "hi"), ("assistant", "yo"), ("user", "again")], system_prompt="S")
    assert text == "S\n\nUser: hi\n\nAssistant: yo<｜end▁of▁sentence｜>User: again\n\nAssistant:"


def test_uvit_matches_upstream_at_other_settings():
    """Upstream's uvit.py (same commit) at settings the golden data lacks: kernel 3 / padding 1, no biases,
    eps 1e-5, one encoder block; two upsamples and three blocks in the decoder, a narrower skip, 10x14 latents
    (tests/data/janusflow_uvit_alt.safetensors, written by upstream's classes with seeded random weights)."""
    from pathlib import Path

    from safetensors import safe_open

    from umm.ports.janusflow import ShallowUViTDecoder, ShallowUViTEncoder

    path = Path(__file__).parent / "data" / "janusflow_uvit_alt.safetensors"
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    enc = ShallowUViTEncoder(**json.loads(meta["enc"])).eval()
    dec = ShallowUViTDecoder(**json.loads(meta["dec"])).eval()
    for prefix, module in (("enc.", enc), ("dec.", dec)):
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    with torch.no_grad():
        x_emb, t_emb, _ = enc(tensors["in.z"], tensors["in.t"])
        velocity = dec(tensors["in.x"], [tensors["in.skip"]], t_emb)
    _close(x_emb, tensors["out.x_emb"], "x_emb")
    _close(t_emb, tensors["out.t_emb"], "t_emb")
    _close(velocity, tensors["out.velocity"], "velocity")
    assert velocity.shape == (3, 4, 20, 28)
