"""DeepGen port: golden parity with upstream (all four recorded cases) and full-size names/shapes on meta.

Golden data: ../shared/golden/deepgen (upstream deepgenteam/deepgen at e6cb0c2, fp32 CPU; see its README).
The folder is loaded through the adapter's normal ``load``; upstream's recorded noise (initial latents,
the reference posterior's eps) is fed in, everything downstream is recomputed and compared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import SHARED
from safetensors.torch import load_file

from umm.adapters.deepgen import DeepGenAdapter
from umm.ports.deepgen import Guidance, encode, sample, schedule, tokenize, vit_pixels
from umm.ports.deepgen import vae as vae_io
from umm.ports.deepgen.connector import DeepGenConnector, connector_kwargs

GOLDEN = SHARED / "golden" / "deepgen"
DATA = Path(__file__).parent / "data" / "deepgen_names_shapes.json"
TOL = 1e-4

needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason="../shared/golden/deepgen is absent (golden data)")


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def golden(real_catalog):
    spec = real_catalog.get("deepgen-1.0").replace(repo=str(GOLDEN), revision=None)
    adapter = DeepGenAdapter(spec)
    adapter.load(torch.device("cpu"), torch.float32)
    yield adapter
    adapter.unload()


def _meta(case: str) -> dict:
    return json.loads((GOLDEN / "meta.json").read_text())[case]


def _conditioning(adapter, case: str):
    recorded = load_file(str(GOLDEN / f"case_conditioning_{case}.safetensors"))
    meta = _meta(case)
    embeds = grid = None
    if case == "edit":
        pixels = 2 * (recorded["ref_image_uint8"].float() / 255) - 1
        assert _diff(pixels[None], recorded["ref_pixel_values"]) == 0
        vit, grid = vit_pixels(pixels[None], adapter.vlm.config.vision_config)
        assert torch.equal(grid, recorded["image_grid_thw"])
        assert _diff(vit, recorded["vit_pixel_values"]) <= TOL
        with torch.no_grad():
            embeds = adapter.vlm.model.visual(vit, grid_thw=grid).pooler_output
        assert _diff(embeds, recorded["image_embeds"]) <= TOL
    merge = adapter.vlm.config.vision_config.spatial_merge_size
    texts = adapter.template.texts([meta["prompt"], meta["negative_prompt"]], grid, merge)
    assert texts == meta["texts"]
    tokens = tokenize(adapter.tokenizer, texts)
    cond = encode(adapter.vlm, adapter.connector, **tokens, image_embeds=embeds, image_grid_thw=grid)
    return cond, recorded


@needs_golden
@pytest.mark.parametrize("case", ["t2i", "edit"])
def test_conditioning_matches_upstream(golden, case):
    cond, recorded = _conditioning(golden, case)
    assert torch.equal(cond.input_ids, recorded["input_ids"])
    assert torch.equal(cond.attention_mask, recorded["attention_mask"])
    assert torch.equal(cond.llm_attention_mask, recorded["llm_attention_mask"])
    assert torch.equal(cond.position_ids, recorded["llm_position_ids"])
    pads = (cond.attention_mask == 0).sum(1).tolist()
    assert pads == _meta(case)["pad_counts"]  # joint left padding: the shorter row is padded
    with torch.no_grad():
        projected = golden.connector.projector_1(cond.stacked)
        connected = golden.connector.encode(cond.stacked)
    pairs = {
        "llm_inputs_embeds": cond.inputs_embeds,
        "stacked_hidden": cond.stacked,
        "projector_1_out": projected,
        "connector_out": connected,
        "pooled_projections": cond.pooled,
        "prompt_embeds": cond.prompt_embeds,
    }
    for name, ours in pairs.items():
        assert ours.shape == recorded[name].shape, name
        assert _diff(ours, recorded[name]) <= TOL, name
    assert recorded["selected_layers"].tolist() == list(range(35, 0, -6))
    if case == "edit":
        with torch.no_grad():
            dist = vae_io.posterior(golden.vae, recorded["ref_pixel_values"])
            refs = vae_io.to_latents(golden.vae, dist.mean, dist.std, recorded["ref_latent_eps"])
        assert _diff(dist.mean, recorded["ref_latent_mean"]) <= TOL
        assert _diff(dist.std, recorded["ref_latent_std"]) <= TOL
        assert _diff(refs, recorded["ref_latents"]) <= TOL


@needs_golden
@pytest.mark.parametrize("case", ["t2i", "edit"])
def test_sampling_and_decoding_match_upstream(golden, case):
    recorded = load_file(str(GOLDEN / f"case_{case}.safetensors"))
    context, pooled = recorded["transformer_encoder_hidden_states"], recorded["transformer_pooled_projections"]
    guidance = Guidance(context[1:], pooled[1:], context[:1], pooled[:1])  # recorded as [uncond; cond]
    latents = recorded["init_latents"]
    steps = len(recorded["timesteps"])
    timesteps, sigmas = schedule(golden.scheduler_config, steps, latents[0, 0].numel() // 4, "cpu")
    assert _diff(timesteps, recorded["timesteps"]) == 0 and _diff(sigmas, recorded["sigmas"]) == 0
    seen = []

    def check(done, total, trace):
        i = done - 1
        seen.append(done)
        assert torch.equal(trace["timestep"], recorded[f"transformer_timestep_step{i}"])
        for ours, name in (("uncond", "noise_pred_uncond"), ("cond", "noise_pred_cond"), ("velocity", "noise_pred"),
                           ("latents", "latents")):
            assert _diff(trace[ours], recorded[f"{name}_step{i}"]) <= TOL, f"{name} step {i}"

    refs = [recorded["ref_latents"]] if case == "edit" else None
    with torch.no_grad():
        final = sample(golden.transformer, latents, guidance, timesteps, sigmas,
                       float(recorded["guidance_scale"]), refs, on_step=check)
        decoded = vae_io.decode(golden.vae, final)
    assert seen == list(range(1, steps + 1))
    assert _diff(final, recorded["final_latents"]) <= TOL
    assert _diff(decoded, recorded["decoded"]) <= TOL
    expected = recorded["image_uint8"]
    assert torch.equal(vae_io.to_uint8(recorded["decoded"]), expected)  # the conversion rule itself: exact
    ours = vae_io.to_uint8(decoded)
    off = ours.int() != expected.int()
    assert (ours.int() - expected.int()).abs().max() <= 1
    edge = 127.5 * recorded["decoded"].float() + 128.0  # a mismatch may only sit on an integer edge
    assert bool(((edge - edge.round()).abs()[off] < 1e-3).all()), "uint8 differs away from an integer edge"


@needs_golden
def test_reference_latents_change_the_edit_prediction(golden):
    """The edit path really appends the references (upstream: 0.051 on the final latents without them)."""
    recorded = load_file(str(GOLDEN / "case_edit.safetensors"))
    context, pooled = recorded["transformer_encoder_hidden_states"], recorded["transformer_pooled_projections"]
    guidance = Guidance(context[1:], pooled[1:], context[:1], pooled[:1])
    timesteps, sigmas = schedule(golden.scheduler_config, 3, 36, "cpu")
    with torch.no_grad():
        without = sample(golden.transformer, recorded["init_latents"], guidance, timesteps, sigmas, 4.0, None)
    assert _diff(without, recorded["final_latents"]) > 0.01


def _template(name: str) -> str:
    return re.sub(r"\.\d+\.", ".N.", name)


def test_full_size_names_and_shapes_match_upstream():
    """Full-size configs on the meta device: every connector and DiT tensor as upstream builds it."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    data = json.loads(DATA.read_text())
    configs = data["configs"]
    with torch.device("meta"):
        connector = DeepGenConnector(**connector_kwargs(configs["connector"], data["connector"]))
        transformer = SD3Transformer2DModel(**configs["transformer"])
        vlm = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**configs["vlm"]))
        vae = AutoencoderKL(**configs["vae"])
    assert {k: list(v.shape) for k, v in connector.state_dict().items()} == data["connector"]
    assert {k: list(v.shape) for k, v in transformer.state_dict().items()} == data["transformer"]
    # The VLM is transformers' own class, as upstream's; check it against the real checkpoint's key naming.
    saved = {re.sub(r"^model\.language_model\.", "model.", re.sub(r"^model\.visual\.", "visual.", k)): list(v.shape)
             for k, v in vlm.state_dict().items() if k != "lm_head.weight"}  # tied to the embeddings
    for name, shape in data["vlm_checkpoint_spot_checks"].items():
        assert saved[name] == shape, name
    if GOLDEN.is_dir():  # the golden vlm/ was written by transformers 4.56 in the checkpoint's own naming
        from safetensors import safe_open

        with safe_open(str(GOLDEN / "vlm" / "model.safetensors"), framework="pt") as handle:
            golden_names = {_template(k) for k in handle.keys()}
        assert {_template(k) for k in saved} == golden_names
    counts = {name: sum(p.numel() for p in module.parameters())
              for name, module in (("vlm", vlm), ("transformer", transformer), ("connector", connector), ("vae", vae))}
    assert 3.7e9 < counts["vlm"] < 3.8e9 and 2.2e9 < counts["transformer"] < 2.3e9
    assert 6.4e9 < sum(counts.values()) < 6.6e9  # ~13 GB of bf16 weights, as the catalog says


@needs_golden
def test_adapter_reproduces_the_upstream_text_to_image_end_to_end(golden):
    """Through ``generate`` itself: on CPU in fp32 the request's generator draws upstream's initial noise."""
    import numpy as np

    from umm.control import RunControl
    from umm.types import GenerateRequest

    meta = _meta("t2i")
    recorded = load_file(str(GOLDEN / "case_t2i.safetensors"))
    params = {"width": meta["width"], "height": meta["height"], "steps": meta["num_inference_steps"],
              "guidance_scale": meta["guidance_scale"], "num_images": 1}
    request = GenerateRequest(meta["prompt"], meta["negative_prompt"], params, seed=meta["noise_seed"])
    steps = []
    result = golden.generate(request, RunControl(on_progress=lambda done, total, what: steps.append((done, total))))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    ours = torch.from_numpy(np.asarray(result.images[0])).permute(2, 0, 1).int()
    expected = recorded["image_uint8"][0].int()
    assert (ours - expected).abs().max() <= 1 and (ours != expected).float().mean() < 0.01
