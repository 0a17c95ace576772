"""BLIP3o-NEXT golden parity: the upstream run's tensors, reproduced through the adapter's own loading.

The golden folder (../shared/golden/blip3o_next, see its README) holds a tiny checkpoint in the
official layout (``model/``) and the SANA repo's configs (``diffusion/``), made by upstream's
``blip3oQwenForInferenceLM.generate_images`` at JiuhaiChen/BLIP3o@6ced364 in fp32. The adapter loads
them as it loads the hub repos; each stage is then compared, and finally one ``generate`` call with
upstream's RNG rule (seed 0, CPU) must give the same image bytes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SHARED

from umm.adapters.blip3o import SANA, SCALE, Blip3oAdapter
from umm.catalog import Component
from umm.control import RunControl
from umm.types import GenerateRequest

GOLDEN = SHARED / "golden" / "blip3o_next"
TOL = 1e-4

pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason="../shared/golden/blip3o_next is not present")


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> float:
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    diff = (actual.detach().float().cpu() - expected.float()).abs().max().item()
    assert diff <= TOL, f"{what}: max abs diff {diff}"
    return diff


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    cases = {name: load_file(GOLDEN / f"case_{name}.safetensors") for name in ("ar", "connector", "diffusion")}
    return cases, json.loads((GOLDEN / "meta.json").read_text())


@pytest.fixture(scope="module")
def adapter(real_catalog):
    spec = real_catalog.get("blip3o-next-sft-3b").replace(
        repo=str(GOLDEN / "model"), revision=None, dtype="float32",
        components={SANA: Component(str(GOLDEN / "diffusion"))},
    )
    adapter = Blip3oAdapter(spec)
    adapter.load(torch.device("cpu"), torch.float32)
    yield adapter
    adapter.unload()


def _prompt_ids(adapter, meta) -> torch.Tensor:
    from umm.ports.blip3o import prompt_text

    text = prompt_text(adapter.tokenizer, meta["prompt"], SCALE)
    assert text == meta["prompt_text"]
    return adapter.tokenizer([text], return_tensors="pt", padding_side="left")["input_ids"]


def test_prompt_ids_follow_the_template_exactly(adapter, golden):
    cases, meta = golden
    ids = _prompt_ids(adapter, meta)
    assert torch.equal(ids, cases["ar"]["input_ids"])
    assert ids[0, -2:].tolist() == [meta["token_ids"]["<im_start>"], meta["token_ids"]["<S0>"]]


def test_ar_stage_logits_filtered_probs_ids_and_noise(adapter, golden):
    from umm.ports.blip3o import sample_image_tokens

    cases, meta = golden
    ar, diffusion = cases["ar"], cases["diffusion"]
    top_k, top_p, temperature, max_new = ar["sampling_params"].tolist()
    generator = torch.Generator().manual_seed(int(ar["sample_seed"]))  # upstream: torch.manual_seed(0)
    trace: dict = {}
    gen_ids, counts = sample_image_tokens(
        adapter.lm, ar["input_ids"], max_new_tokens=int(max_new), top_k=int(top_k), top_p=top_p,
        temperature=temperature, generator=generator, eos_token_ids=adapter.eos_token_ids,
        pad_token_id=adapter.pad_token_id, trace=trace,
    )
    assert torch.equal(gen_ids, ar["gen_ids"]) and counts == [int(max_new)]
    logits, probs = torch.cat(trace["step_logits"]), torch.cat(trace["step_probs"])
    _close(logits, ar["step_logits"], "step_logits")
    _close(probs, ar["step_probs"], "step_probs")
    assert torch.equal(probs == 0, ar["step_probs"] == 0), "top-k/top-p kept a different token set"
    assert (probs > 0).sum(-1).tolist() == meta["checks"]["kept_tokens_per_step"]
    # the noise comes next from the same generator, in bf16, as upstream draws it
    noise = torch.randn(diffusion["init_latents"].shape, generator=generator, dtype=torch.bfloat16)
    assert torch.equal(noise.float(), diffusion["init_latents"])


def test_teacher_forced_logits_and_conditioning_span(adapter, golden):
    from umm.ports.blip3o import conditioning

    cases, _ = golden
    ar, conn = cases["ar"], cases["connector"]
    with torch.inference_mode():
        _close(adapter.lm(ar["gen_ids"]).logits, ar["logits_teacher_forced"], "logits_teacher_forced")
        _close(adapter.lm.model(input_ids=ar["gen_ids"]).last_hidden_state, conn["hidden_states_last"], "hidden")
        cond, mask = conditioning(adapter.lm, ar["gen_ids"], [ar["new_tokens"].shape[1]])
        _close(cond, conn["pred_latent"], "pred_latent")
        assert mask is None and cond.shape[1] == ar["gen_ids"].shape[1] - int(conn["selected_start"])
        # upstream's rule: one after the first <im_start>
        assert int((ar["gen_ids"][0] == adapter.lm.config.image_start_tag_id).nonzero()[0]) + 1 == int(
            conn["selected_start"]
        )
        _close(adapter.connector(conn["connector_in"]), conn["connector_out"], "connector_out")


def test_diffusion_trace_and_decoded_image(adapter, golden):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from umm.ports.blip3o import decode, denoise

    cases, _ = golden
    conn, diffusion = cases["connector"], cases["diffusion"]
    trace: dict = {}
    latents = denoise(
        adapter.sana, adapter.connector, FlowMatchEulerDiscreteScheduler.from_config(adapter.scheduler_config),
        conn["pred_latent"], diffusion["init_latents"].to(torch.bfloat16), steps=diffusion["timesteps"].numel(),
        guidance_scale=float(diffusion["guidance_scale"]), trace=trace,
    )
    compared = 0
    for name, expected in diffusion.items():
        if name in trace:
            _close(trace[name], expected, name)
            compared += 1
    assert compared == len(diffusion) - 5  # all but guidance_scale, final_latents, decoded, image, image_uint8
    _close(latents, diffusion["final_latents"], "final_latents")
    decoded, image = decode(adapter.vae, latents)
    _close(decoded, diffusion["decoded"], "decoded")
    assert np.abs(image.astype(int) - diffusion["image_uint8"].numpy().astype(int)).max() <= 1


def test_generate_end_to_end_reproduces_upstreams_image(adapter, golden):
    cases, meta = golden
    params = {
        "max_new_tokens": meta["max_new_tokens"], "top_k": meta["top_k"], "top_p": meta["top_p"],
        "temperature": meta["temperature_effective"], "steps": meta["num_inference_steps"],
        "guidance_scale": meta["guidance_scale"], "num_images": 1,
    }
    result = adapter.generate(GenerateRequest(meta["prompt"], params=params, seed=meta["seed"]), RunControl())
    pixels = np.asarray(result.images[0], dtype=int)
    assert np.abs(pixels - cases["diffusion"]["image_uint8"][0].numpy().astype(int)).max() <= 1
