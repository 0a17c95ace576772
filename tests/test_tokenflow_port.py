"""TokenFlow port vs upstream (ByteFlow-AI/TokenFlow @ 9812da01, fp32 CPU): golden parity, KV cache.

Golden data: ../shared/golden/tokenflow (tiny random weights in the official naming, upstream outputs).
Floats to 1e-4; ids, codes, kept masks and uint8 images exactly.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SHARED
from safetensors.torch import load_file

from umm.ports.tokenflow import TokenLayout, generate_codes, load_llm, load_pixel_decoder, prefix_ids, to_uint8
from umm.ports.tokenflow.sampler import additive, allowed_mask, sequence_embeds
from umm.ports.tokenflow.vq import llm_image_features

GOLDEN = SHARED / "golden" / "tokenflow"
pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason="shared golden data (../shared/golden/tokenflow) is absent")
TOL = 1e-4


@pytest.fixture(scope="module")
def meta():
    return json.loads((GOLDEN / "meta.json").read_text())


@pytest.fixture(scope="module")
def scales(meta):
    return tuple(meta["scales"])


@pytest.fixture(scope="module")
def lm(scales):
    return load_llm(GOLDEN / "llm", scales, torch.float32, "cpu")


@pytest.fixture(scope="module")
def vq():
    return load_pixel_decoder(GOLDEN / "tokenflow" / "model.safetensors", torch.float32, "cpu")


@pytest.fixture(scope="module")
def layout(meta):
    return TokenLayout(meta["image_token_start"], meta["pad_token_id"], meta["bos_token_id"], (meta["img_token_id"],),
                       meta["max_text_token_num"])


def case(name):
    return load_file(GOLDEN / f"case_{name}.safetensors")


def close(a, b, tol=TOL):
    return (a.float() - b.float()).abs().max().item() <= tol


def test_prompt_layout(layout):
    c = case("llm_logits")
    for i in range(4):
        assert prefix_ids(c[f"prompt_token_ids_{i}"].tolist(), layout) == c["prefix_ids"][i].tolist()
    long = prefix_ids(list(range(5, 300)), layout)  # cut to 128 after prepending BOS
    assert len(long) == 129 and long[0] == layout.bos_token_id and long[-1] == layout.img_ids[0]


def test_teacher_forced_inputs_mask_and_logits(lm, vq, scales, layout):
    c = case("llm_logits")
    rows, codes = c["prefix_ids"], torch.cat([c["image_codes"]] * 2)
    features = llm_image_features(vq, c["image_codes"], scales)
    assert close(features, c["image_features"])
    embeds = sequence_embeds(lm, rows, torch.cat([features] * 2)[:, : sum(s * s for s in scales) - 1])
    assert close(embeds, c["inputs_embeds"])
    allowed = allowed_mask(rows, scales, embeds.shape[1], layout.pad_token_id)
    assert torch.equal(allowed, c["attention_mask_allowed"])
    logits = lm(embeds, 0, additive(allowed, torch.float32))
    l0 = rows.shape[1] - 1
    assert close(logits[:, l0:], c["logits"])
    assert codes.shape[1] == c["logits"].shape[1]


def test_decode(vq, scales):
    c = case("decode")
    assert close(vq.quantize(c["codes"]), c["codebook_vectors"])
    assert close(llm_image_features(vq, c["codes"], scales), c["llm_image_features"])
    latent = vq.latent(c["codes"], scales)
    assert close(latent, c["latent"])
    assert close(vq.post_quant_conv(latent[:, 32:]), c["decoder_input"])
    image = vq.decode(c["codes"], scales)
    assert close(image, c["image"])
    assert torch.equal(to_uint8(image), c["image_uint8"])


def _run(lm, vq, layout, name, use_cache, force):
    c = case(name)
    seen = {}

    def trace(k, j, record):
        tag = f"s{k}_l{j}"
        seen[tag] = record
        return c[f"ids_{tag}"] if force else None

    codes = generate_codes(
        lm, vq, c["prefix_ids"], layout, cfg=float(c["cfg"]), top_k=c["top_k"].tolist(), top_p=c["top_p"].tolist(),
        generator=torch.Generator("cpu").manual_seed(int(c["g_seed"])), use_cache=use_cache, trace=trace,
    )
    return c, seen, codes


@pytest.mark.parametrize("name", ["generate", "generate_loop2"])
@pytest.mark.parametrize("use_cache", [False, True], ids=["upstream-recompute", "kv-cache"])
def test_generation_trace(lm, vq, layout, scales, name, use_cache):
    start = layout.image_token_start
    c, seen, codes = _run(lm, vq, layout, name, use_cache, force=True)
    tags = sorted(k[len("ids_"):] for k in c if k.startswith("ids_"))
    assert sorted(seen) == tags
    for tag in tags:
        record = seen[tag]
        assert close(record["guided"][..., start:], c[f"guided_logits_{tag}"]), tag
        assert torch.isinf(record["guided"][..., :start]).all()
        assert torch.equal(record["kept"][..., start:], c[f"kept_{tag}"]), tag
        assert not record["kept"][..., :start].any()
        assert torch.equal(record["ids"], c[f"ids_{tag}"]), tag  # the seeded draw itself, not the forced ids
        if f"cond_logits_{tag}" in c:
            assert close(record["cond"][..., start:], c[f"cond_logits_{tag}"])
            assert close(record["uncond"][..., start:], c[f"uncond_logits_{tag}"])
    assert torch.equal(codes, c["codes"])
    image = vq.decode(codes, scales)
    assert close(image, c["image"])
    assert torch.equal(to_uint8(image), c["image_uint8"])


@pytest.mark.parametrize("name", ["generate", "generate_loop2"])
def test_free_running_generation_reproduces_upstream_codes(lm, vq, layout, name):
    for use_cache in (False, True):
        c, _, codes = _run(lm, vq, layout, name, use_cache, force=False)
        assert torch.equal(codes, c["codes"])
