"""Parity of the Show-o2 port with golden outputs of upstream's code (showlab/Show-o, show-o2/, fp32, CPU).

The golden folder holds tiny random weights in the official naming (``model/``), an HQ-style config
(``model_hq/``), stand-ins for the Qwen2.5 / SigLIP configs and the tokenizer, and traces of the
understanding demo and of two text-to-image runs; see its README.md. Everything loads through the
port's own loader (``load_model``), the one the adapter uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SHARED
from safetensors.torch import load_file

from umm.ports.showo2 import (
    HeadConfig,
    TokenIds,
    additive,
    decode,
    generation_batch,
    generation_sequence,
    load_model,
    omni_mask,
    sample,
    showo_tokenizer,
    time_grid,
    understanding_embeds,
    understanding_sequence,
)

GOLDEN = SHARED / "golden" / "showo2"
TOL = 1e-4

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "model" / "config.json").is_file(),
    reason=f"Show-o2 golden data not found at {GOLDEN} (../shared next to the repo)",
)


def _configs():
    from transformers import Qwen2Config, SiglipVisionConfig

    head = HeadConfig.from_dict(json.loads((GOLDEN / "diffusion_head_config.json").read_text()))
    return Qwen2Config.from_pretrained(GOLDEN / "llm"), SiglipVisionConfig.from_pretrained(GOLDEN / "siglip"), head


def _load(config: str = "model"):
    llm, vision, head = _configs()
    return load_model(
        GOLDEN / "model", GOLDEN / "model" / "pytorch_model.safetensors", llm, vision, head,
        config_path=GOLDEN / config / "config.json",
    )


@pytest.fixture(scope="module")
def model():
    return _load()


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return showo_tokenizer(AutoTokenizer.from_pretrained(GOLDEN / "tokenizer"))


@pytest.fixture(scope="module")
def meta():
    return json.loads((GOLDEN / "meta.json").read_text())


def _close(name: str, mine: torch.Tensor, gold: torch.Tensor) -> None:
    assert mine.shape == gold.shape, f"{name}: shape {tuple(mine.shape)} vs {tuple(gold.shape)}"
    diff = (mine.float() - gold.float()).abs().max().item()
    assert diff <= TOL, f"{name}: max abs diff {diff:.3g} > {TOL}"


@needs_golden
def test_tokenizer_ids_match_upstream(tokenizer, meta):
    ids = TokenIds.of(tokenizer)
    expected = meta["token_ids"]
    assert (ids.bos, ids.eos, ids.boi, ids.eoi, ids.img_pad, ids.pad) == (
        expected["bos_id"], expected["eos_id"], expected["boi_id"], expected["eoi_id"], expected["img_pad_id"],
        meta["pad_id"],
    )
    assert len(tokenizer) == meta["llm_vocab_size"]


@needs_golden
def test_understanding_matches_golden(model, tokenizer, meta):
    case = load_file(GOLDEN / "case_understanding.safetensors")
    ids = TokenIds.of(tokenizer)
    question = meta["understanding"]["question"]
    n_image = case["fused_image_embeds"].shape[0]  # N image tokens, from the data (16 in the shared case)
    seq, block = understanding_sequence(tokenizer, ids, [("user", question)], n_image)
    assert seq == case["sequence_ids"].tolist()
    assert list(block) == case["modality_positions"].tolist()
    mask = omni_mask(len(seq), torch.tensor([block]))[0]
    assert torch.equal(mask, case["attention_mask"])
    z = case["image_latents"]
    with torch.no_grad():
        h, w = (s // model.patch_size for s in z.shape[-2:])
        _close("und_patch_embeds", model.image_embedder_und(z)[0], case["und_patch_embeds"])
        _close("und_position_embeds", model.position_embeds(h, w), case["und_position_embeds"])
        _close("und_trans_out", model.semantic(z)[0], case["und_trans_out"])
        _close("gen_path_embeds", model.image_embedder_gen(z)[0], case["gen_path_embeds"])
        _close("fused_image_embeds", model.image_embeds(z)[0], case["fused_image_embeds"])
        temb, token = model.time_embeds(torch.ones(1))
        _close("time_embed_t1", temb[0], case["time_embed_t1"])
        _close("time_token_embed", token[0], case["time_token_embed"])
        embeds = understanding_embeds(model, seq, block, z)
        _close("input_embeds", embeds[0], case["input_embeds"])
        prefill = model.logits(model.llm(embeds, additive(mask[None], embeds.dtype)))
        _close("prefill_logits", prefill[0], case["prefill_logits"])
        for use_cache in (True, False):
            rows: list[torch.Tensor] = []
            tokens = list(decode(model, embeds, block, max_new_tokens=meta["understanding"]["max_new_tokens"],
                                 eos=ids.eos, pick=lambda logits: logits.argmax(), use_cache=use_cache,
                                 on_logits=rows.append))
            assert tokens == case["generated_ids"].tolist() == meta["understanding"]["generated"]
            _close(f"decode_logits (cache={use_cache})", torch.cat(rows), case["decode_logits"])
    final = case["decode_final_mask"]
    grown = torch.ones(final.shape, dtype=torch.bool).tril()
    grown[: len(seq), : len(seq)] = mask
    assert torch.equal(grown, final)  # new rows are plain causal: what makes the KV cache exact


@needs_golden
def test_understanding_prompt_strings(tokenizer):
    """Upstream's fixed strings, tokenized without special-token insertion; <|im_end|> stays one token."""
    case = load_file(GOLDEN / "case_understanding.safetensors")
    ids = TokenIds.of(tokenizer)
    seq, _ = understanding_sequence(tokenizer, ids, [("user", "What is in the image?")], None)
    a = case["text_tokens_a"].tolist()
    b = case["text_tokens_b"].tolist()
    assert seq == a + b[2:]  # no image: the same text without [boi, eoi]


@needs_golden
@pytest.mark.parametrize("name", ["t2i", "t2i_hq"])
def test_text_to_image_matches_golden(tokenizer, meta, name):
    hq = name == "t2i_hq"
    model = _load("model_hq") if hq else _load()
    case = load_file(GOLDEN / f"case_{name}.safetensors")
    info = meta[name]
    ids = TokenIds.of(tokenizer)
    n = info["num_t2i_image_tokens"] - 1
    max_text_len = info["max_text_len"]
    cond, cond_block = generation_sequence(tokenizer, ids, info["prompt"], n, max_text_len)
    uncond, uncond_block = generation_sequence(tokenizer, ids, "", n, max_text_len)
    assert cond == case["text_tokens_cond"].tolist() and uncond == case["text_tokens_uncond"].tolist()
    assert list(cond_block) == case["modality_positions_cond"].tolist() == info.get("block_cond", list(cond_block))
    assert list(uncond_block) == case["modality_positions_uncond"].tolist()
    steps, scale = info["num_inference_steps"], info["guidance_scale"]
    grid = time_grid(steps, info["time_shifting_factor"])
    _close("timesteps", grid[:-1], case["timesteps"])
    if "time_grid" in case:
        _close("time_grid", grid, case["time_grid"])
    assert torch.equal(case["noise_fp32"].to(torch.bfloat16).float(), case["init_latents"])
    batch = generation_batch(tokenizer, ids, [info["prompt"]], n, max_text_len, True, torch.float32, "cpu",
                             trim=False)
    if "attention_mask_cond" in case:
        assert torch.equal(batch.mask[0, 0] == 0, case["attention_mask_cond"])
        assert torch.equal(batch.mask[1, 0] == 0, case["attention_mask_uncond"])
    trace: list[dict] = []
    with torch.no_grad():
        final = sample(model, batch, case["noise_fp32"], steps=steps, guidance_scale=scale, trace=trace)
    assert len(trace) == info["model_evaluations"]
    for k, step in enumerate(trace):
        _close(f"x_step{k}", step["x"], case[f"x_step{k}"])
        _close(f"v_cond_step{k}", step["cond"], case[f"v_cond_step{k}"])
        _close(f"v_uncond_step{k}", step["uncond"], case[f"v_uncond_step{k}"])
        _close(f"velocity_step{k}", step["v"], case[f"velocity_step{k}"])
        if f"latents_after_step{k}" in case:
            after = trace[k + 1]["x"] if k + 1 < len(trace) else final
            _close(f"latents_after_step{k}", after, case[f"latents_after_step{k}"])
    _close("final_latents", final, case["final_latents"])

    single = generation_batch(tokenizer, ids, [info["prompt"]], n, max_text_len, False, torch.float32, "cpu",
                              trim=False)
    inner: dict[str, torch.Tensor] = {}
    x = case["single_x_t"]
    with torch.no_grad():
        v = model.forward_velocity(single.ids, single.blocks, single.mask, x, case["single_t"].reshape(1), inner)
        _close("single_und_trans_out", model.semantic(x)[0], case["single_und_trans_out"])
    _close("single_velocity", v, case["single_velocity"])
    names = {"fused": "fused_image_embeds", "temb": "time_embed", "time_token": "time_token_embed",
             "input_embeds": "llm_input_embeds", "last_hidden": "llm_last_hidden", "diff_proj_out": "diff_proj_out",
             "head_a0_out": "head_a0_out", "head_a1_out": "head_a1_out", "head_tokens": "head_tokens"}
    for mine, gold in names.items():
        if f"single_{gold}" in case:
            _close(f"single_{gold}", inner[mine][0], case[f"single_{gold}"])
    if hq:
        side = info["latent_tokens"]
        _close("interpolated_position_embeds", model.position_embeds(*side), case["interpolated_position_embeds"])


@needs_golden
def test_trimmed_batch_gives_the_same_velocities(model, tokenizer, meta):
    """Dropping the closing tokens and pads after the blocks (a speed-up) changes no velocity."""
    case = load_file(GOLDEN / "case_t2i.safetensors")
    info = meta["t2i"]
    ids = TokenIds.of(tokenizer)
    prompts = [info["prompt"], "a dog"]
    n = info["num_t2i_image_tokens"] - 1
    full = generation_batch(tokenizer, ids, prompts, n, info["max_text_len"], True, torch.float32, "cpu", trim=False)
    trim = generation_batch(tokenizer, ids, prompts, n, info["max_text_len"], True, torch.float32, "cpu")
    assert trim.ids.shape[1] < full.ids.shape[1]
    x = case["single_x_t"].repeat(4, 1, 1, 1)
    t = torch.full((4,), 0.37)
    with torch.no_grad():
        a = model.forward_velocity(full.ids, full.blocks, full.mask, x, t)
        b = model.forward_velocity(trim.ids, trim.blocks, trim.mask, x, t)
    _close("trimmed velocity", b, a)
    assert (a[0] - a[1]).abs().max() > 1e-2  # the two prompts differ, so the rows are really checked


def test_kv_cache_decode_equals_recompute_on_other_sizes():
    """A longer greedy decode on another random config (LLM width = head width: no diff_proj)."""
    from transformers import Qwen2Config, SiglipVisionConfig

    from umm.adapters.showo2 import QWEN_SPECIALS
    from umm.ports.showo2 import Showo2Model
    from umm.tiny import train_tokenizer

    tokenizer = showo_tokenizer(train_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>"))
    torch.manual_seed(7)
    llm = Qwen2Config(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=512)
    vision = SiglipVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                image_size=42, patch_size=14)
    head = HeadConfig(hidden_size=48, head_dim=12, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2)
    config = {"llm_vocab_size": len(tokenizer), "hidden_size": 48, "clip_latent_dim": 24, "image_latent_dim": 16,
              "patch_size": 2, "num_diffusion_layers": 1}
    model = Showo2Model(config, llm, vision, head).eval()
    assert not hasattr(model, "diff_proj") and not hasattr(model, "time_embed_proj")
    ids = TokenIds.of(tokenizer)
    seq, block = understanding_sequence(tokenizer, ids, [("user", "what is this?")], 9)
    z = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        embeds = understanding_embeds(model, seq, block, z)
        runs = {}
        for use_cache in (True, False):
            rows: list[torch.Tensor] = []
            runs[use_cache] = list(decode(model, embeds, block, max_new_tokens=24, eos=-1,
                                          pick=lambda logits: logits.argmax(), use_cache=use_cache,
                                          on_logits=rows.append)), torch.cat(rows)
    assert runs[True][0] == runs[False][0] and len(runs[True][0]) == 24
    assert (runs[True][1] - runs[False][1]).abs().max() < 1e-4


NAMES = Path(__file__).parent / "data" / "showo2_names_shapes.json"


@pytest.mark.parametrize("size", ["1.5b", "7b"])
def test_full_size_names_and_shapes_match_upstream(size):
    """Built on the meta device from the real sizes; names and shapes recorded from upstream's own module."""
    from transformers import Qwen2Config, SiglipVisionConfig

    from umm.ports.showo2 import Showo2Model

    data = json.loads(NAMES.read_text())
    config = data["configs"][size]
    with torch.device("meta"):
        model = Showo2Model(config["model"], Qwen2Config(**config["llm"]), SiglipVisionConfig(**data["siglip_vision"]))
    mine = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert mine == data["names_shapes"][size]
    unique = sum(p.numel() for p in model.parameters())
    if size == "1.5b":  # the public count of the real checkpoint, lm_head counted separately (tied)
        assert unique + model.showo.lm_head.weight.numel() == 3_063_740_640
        parts = {"fusion_proj": 6_493_824, "diff_proj": 7_344_128, "diffusion_head_b": 8_525_888}
        for name, count in parts.items():
            assert sum(p.numel() for p in getattr(model, name).parameters()) == count
        time_params = [*model.time_embed.parameters(), *model.time_embed_proj.parameters()]
        assert sum(p.numel() for p in time_params) == 7_869_952
        assert f"und_trans.layers.{25}.mlp.fc2.bias" in mine and "und_trans.layers.26.mlp.fc2.bias" not in mine
    else:
        assert unique == 8_932_118_752  # untied: lm_head is its own (151669, 3584) matrix
