"""Parity of the Bagel port with golden outputs of the upstream implementation (fp32, CPU).

The golden folder holds tiny weights in the official names (``ema.safetensors``, ``ae.safetensors`` in the
original FLUX naming, the two config JSONs) and four recorded cases; see its README.md. Everything is
loaded through the port's own loading code. The full-size name/shape check compares against
``tests/data/bagel_names_shapes.json``, the ``state_dict`` of upstream's ``Bagel`` and ``AutoEncoder``
built on the meta device the way app.py builds them (source repo and commit recorded in that file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from umm.ports.bagel import (
    Bagel,
    BagelConfig,
    Context,
    Guidance,
    ImageTransform,
    Session,
    SpecialIds,
    Trace,
    empty_branches,
    load_autoencoder,
    sample_latents,
    to_uint8,
    unpatchify,
    with_image,
    with_text,
)
from umm.ports.bagel.autoencoder import SCALE_FACTOR, SHIFT_FACTOR, decode_latent, encode_moments, sample_latent
from umm.ports.bagel.inference import grid_position_ids, patchify, to_tensor
from umm.ports.bagel.tiny import ldm_ae_shapes

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "bagel"
NAMES = Path(__file__).parent / "data" / "bagel_names_shapes.json"
TOL = 1e-4

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "ema.safetensors").is_file(), reason=f"Bagel golden data not found at {GOLDEN} (../shared)"
)


def _d(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((GOLDEN / "meta.json").read_text())


@pytest.fixture(scope="module")
def session(meta) -> Session:
    from accelerate import init_empty_weights

    config = BagelConfig.from_folder(GOLDEN)
    with init_empty_weights():
        model = Bagel(config)
    model.load_state_dict(load_file(GOLDEN / "ema.safetensors"), strict=True, assign=True)
    ids = meta["new_token_ids"]
    return Session(model.eval(), SpecialIds(ids["bos_token_id"], ids["eos_token_id"], ids["start_of_image"],
                                            ids["end_of_image"]))


@pytest.fixture(scope="module")
def vae():
    return load_autoencoder(GOLDEN / "ae.safetensors")


def _transforms(meta) -> tuple[ImageTransform, ImageTransform]:
    v, t = meta["vae_transform"], meta["vit_transform"]
    return (ImageTransform(v["max_image_size"], v["min_image_size"], v["image_stride"]),
            ImageTransform(t["max_image_size"], t["min_image_size"], t["image_stride"]))


def _guidance(case: dict) -> Guidance:
    return Guidance(case["cfg_text_scale"], case["cfg_img_scale"], tuple(case["cfg_interval"]),
                    case["cfg_renorm_min"], case["cfg_renorm_type"], case["num_timesteps"], case["timestep_shift"])


@needs_golden
def test_config_read_like_app_py(session, meta):
    config = session.config
    bagel = meta["bagel_config"]
    assert config.vit.num_hidden_layers == 2  # vit_config.json says 3; app.py builds one fewer
    assert config.max_latent_size == bagel["max_latent_size"]
    assert config.vit_max_num_patch_per_side == bagel["vit_max_num_patch_per_side"]
    assert config.latent_patch_size == bagel["latent_patch_size"]
    assert config.latent_channels == meta["ae_params"]["z_channels"]
    assert config.vae_downsample == meta["ae_params"]["downsample"]


@needs_golden
def test_understanding(session, meta):
    case = load_file(GOLDEN / "case_understanding.safetensors")
    vae_t, vit_t = _transforms(meta)
    resized = vae_t.resize(Image.fromarray(case["image_uint8"].numpy()))
    assert np.array_equal(np.asarray(resized), case["vae_resized_uint8"].numpy())
    pixels = vit_t(resized)
    assert _d(pixels, case["vit_pixel_values"]) <= TOL
    assert _d(patchify(pixels, 14), case["vit_patches"]) <= TOL
    p, side = session.config.vit.patch_size, session.config.vit_max_num_patch_per_side
    assert torch.equal(grid_position_ids(pixels.shape[1] // p, pixels.shape[2] // p, side), case["vit_position_ids"])
    with torch.no_grad():
        features = session.model.vit_model.vision_model(case["vit_patches"], case["vit_position_ids"])
        assert _d(features, case["vit_encoder_out"]) <= TOL
        assert _d(session.vit_rows(pixels), case["vit_llm_embeds"]) <= TOL
        context = session.add_text(session.add_vit_image(Context(), pixels), case["question_ids"].tolist())
        assert context.length == len(case["context_ids"])
        assert context.rope == int(case["context_position_ids"].max()) + 1 == int(case["decode_position_ids"][0])
        logits = []

        def pick(row):
            logits.append(row)
            return int(row.argmax())

        answer = list(session.decode(context, meta["understanding"]["max_length"], pick))
    assert _d(torch.stack(logits), case["decode_logits"]) <= TOL
    assert answer == case["decode_input_ids"][1:].tolist()
    assert [int(r.argmax()) for r in logits] == case["generated_ids"].tolist()


@needs_golden
def test_understanding_needs_the_image_and_its_block_attention(session, meta):
    """The check can fail: without the image block the first logits move far beyond the tolerance."""
    case = load_file(GOLDEN / "case_understanding.safetensors")
    with torch.no_grad():
        context = session.add_text(Context(), case["question_ids"].tolist())
        row = []
        list(session.decode(context, 1, lambda r: row.append(r) or 0))
    assert _d(row[0], case["decode_logits"][0]) > 100 * TOL


def _run(session, vae, meta, name):
    case = load_file(GOLDEN / f"case_{name}.safetensors")
    branches = empty_branches()
    found: dict[str, float] = {}
    if name == "edit":
        vae_t, vit_t = _transforms(meta)
        resized = vae_t.resize(Image.fromarray(case["image_uint8_input"].numpy()))
        pixels = to_tensor(resized)[None]
        found["vae_pixel_values"] = _d(pixels, case["vae_pixel_values"])
        moments = encode_moments(vae, pixels)
        found["vae_encoder_moments"] = _d(moments, case["vae_encoder_moments"])
        latent = sample_latent(vae, moments, case["vae_posterior_noise"])
        found["vae_latent"] = _d(latent, case["vae_latent"])
        vit = vit_t(resized)
        found["vit_pixel_values"] = _d(vit, case["vit_pixel_values"])
        found["vit_patches"] = _d(patchify(vit, 14), case["vit_patches"])
        branches = with_image(branches, session, vit, latent)
        height, width = resized.height, resized.width
    else:
        height, width = case["image_shape"].tolist()
    branches = with_text(branches, session, case["prompt_ids"].tolist())
    for key, context in (("cond", branches.cond), ("text_uncond", branches.text_uncond),
                         ("img_uncond", branches.img_uncond)):
        assert context.length == len(case[f"{key}_context_ids"])
        assert context.rope == int(case[f"{key}_latent_block_position_id"][0])
    trace = Trace([], [], [])
    final = sample_latents(session, branches, height, width, case["init_noise"], _guidance(meta[name]), trace=trace)
    assert torch.allclose(torch.tensor(trace.timesteps), case["timesteps"], atol=1e-6)
    assert trace.cfg_active == case["cfg_active"].tolist()
    for i, step in enumerate(trace.steps):
        for key, value in step.items():
            if f"{key}_step{i}" in case:
                found[f"{key}_step{i}"] = _d(value, case[f"{key}_step{i}"])
    found["final_latents"] = _d(final, case["final_latents"])
    config = session.config
    h, w = height // config.latent_downsample, width // config.latent_downsample
    unpacked = unpatchify(final, h, w, config.latent_patch_size, config.latent_channels)
    found["final_latents_unpacked"] = _d(unpacked, case["final_latents_unpacked"])
    decoded = decode_latent(vae, unpacked)
    found["decoded"] = _d(decoded, case["decoded"])
    image = np.asarray(to_uint8(decoded)).astype(int)
    assert np.abs(image - case["image_uint8"].numpy().astype(int)).max() <= 1
    if "single_x_t" in case:
        pos = grid_position_ids(h, w, config.max_latent_size)
        velocity = session.velocity(branches.cond, case["single_x_t"], case["single_t"][0], pos)
        found["single_velocity"] = _d(velocity, case["single_velocity"])
    return found


@needs_golden
@pytest.mark.parametrize("name", ["t2i", "edit"])
def test_generation_traces(session, vae, meta, name):
    with torch.no_grad():
        found = _run(session, vae, meta, name)
    assert len(found) >= (10 if name == "t2i" else 20)
    assert max(found.values()) <= TOL, found


@needs_golden
def test_autoencoder(vae):
    case = load_file(GOLDEN / "case_ae.safetensors")
    with torch.no_grad():
        moments = encode_moments(vae, case["pixel_values"])
        assert _d(moments, case["encoder_moments"]) <= TOL
        mean = SCALE_FACTOR * (moments[:, : moments.shape[1] // 2] - SHIFT_FACTOR)
        assert _d(mean, case["latent_mean"]) <= TOL
        assert _d(sample_latent(vae, moments, case["posterior_noise"]), case["latent_sample"]) <= TOL
        assert _d(decode_latent(vae, case["latent_mean"]), case["decoded_from_mean"]) <= TOL


def test_full_size_names_and_shapes():
    """The port built on the meta device from the real configs has upstream's names and shapes exactly."""
    from transformers.models.qwen2.configuration_qwen2 import Qwen2Config
    from transformers.models.siglip.configuration_siglip import SiglipVisionConfig

    data = json.loads(NAMES.read_text())
    assert "056b5fd51a88c1eb4547318609e25d40080fcf87" in data["source"]
    llm = Qwen2Config(**data["llm_config"])
    llm.tie_word_embeddings = False
    vit = SiglipVisionConfig(**data["vit_config"])
    vit.num_hidden_layers -= 1
    config = BagelConfig.from_shapes(llm, vit, data["ema"], data["ae"])
    assert (config.max_latent_size, config.vit_max_num_patch_per_side, config.latent_patch_size) == (64, 70, 2)
    with torch.device("meta"):
        model = Bagel(config)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == data["ema"]
    assert sum(int(np.prod(s)) for s in ours.values()) == 14_607_260_128
    assert {k: list(v) for k, v in ldm_ae_shapes(**data["ae_params"]).items()} == data["ae"]


def test_full_size_autoencoder_converts_to_diffusers():
    """The real AE's original names convert onto AutoencoderKL (FLUX config) with nothing left over."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from umm.ports.bagel.autoencoder import ae_config

    shapes = json.loads(NAMES.read_text())["ae"]
    config = ae_config(shapes)
    assert config["block_out_channels"] == [128, 256, 512, 512] and config["layers_per_block"] == 2
    state = convert_ldm_vae_checkpoint({k: torch.empty(s, device="meta") for k, s in shapes.items()}, config)
    with init_empty_weights():
        vae = AutoencoderKL(**config)
    assert {k: list(v.shape) for k, v in state.items()} == {k: list(v.shape) for k, v in vae.state_dict().items()}


@needs_golden
def test_recorded_noise_is_a_seeded_cpu_generator_in_upstreams_order():
    """What the adapter draws on CPU: T2I noise = randn(N, 64); edit: the posterior ε first, then the noise."""
    t2i = load_file(GOLDEN / "case_t2i.safetensors")
    assert torch.equal(torch.randn(t2i["init_noise"].shape, generator=torch.Generator().manual_seed(3)),
                       t2i["init_noise"])
    edit = load_file(GOLDEN / "case_edit.safetensors")
    generator = torch.Generator().manual_seed(5)
    assert torch.equal(torch.randn(edit["vae_posterior_noise"].shape, generator=generator), edit["vae_posterior_noise"])
    assert torch.equal(torch.randn(edit["init_noise"].shape, generator=generator), edit["init_noise"])
