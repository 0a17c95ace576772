"""MMaDA port: golden parity with upstream (Gen-Verse/MMaDA), full-size names/shapes, samplers, adapter.

Golden data: ../shared/golden/mmada (a tiny MMadaModelLM saved by upstream's save_pretrained, forward
logits, traces of generate / mmu_generate / text CFG / t2i_generate); see its README. The model loads
through the port's normal loader (``LlamaForCausalLM.from_pretrained`` with the key rename). Every float
within 1e-4 (Gumbel values 1e-6), every id exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SHARED
from safetensors.torch import load_file

from umm.ports.mmada.generate import block_steps, chat_text, generate_text, t2i_generate, t2i_prompt, transfer_counts
from umm.ports.mmada.model import KEY_MAPPING, MmadaIds, forward, llama_config, load_model
from umm.ports.mmada.tiny import to_official

GOLDEN = SHARED / "golden" / "mmada"
DATA = Path(__file__).parent / "data" / "mmada_names_shapes.json"
TOL = 1e-4

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "model" / "model.safetensors").is_file(), reason=f"MMaDA golden data not found at {GOLDEN}"
)


@pytest.fixture(scope="module")
def golden():
    config = json.loads((GOLDEN / "model" / "config.json").read_text())
    meta = json.loads((GOLDEN / "meta.json").read_text())
    i = meta["ids"]
    ids = MmadaIds(
        bos=i["bos"], eos=i["eos"], mask=i["mask"], offset=i["image_offset"], codebook_size=config["codebook_size"],
        start_header=i["start_header"], end_header=i["end_header"], eot_id=i["eot_id"],
        max_text_len=meta["t2i"]["max_text_len"],
    )
    for name in ("soi", "eoi", "t2i", "mmu", "ipad", "r2i"):
        assert ids.reserved(name) == i[name], name
    return load_model(str(GOLDEN / "model"), config, torch.float32), ids, meta


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@needs_golden
def test_forward_is_bidirectional_and_matches(golden):
    model, _, _ = golden
    case = load_file(GOLDEN / "case_forward.safetensors")
    with torch.no_grad():
        assert _diff(forward(model, case["text_input_ids"]), case["text_logits"]) <= TOL
        assert _diff(forward(model, case["mmu_input_ids"]), case["mmu_logits"]) <= TOL


@needs_golden
@pytest.mark.parametrize(("case_name", "key"), [("case_text_gen", "text_gen"), ("case_mmu_gen", "mmu_gen"),
                                                ("case_text_cfg", "cfg_gen")])
def test_text_sampler_trace(golden, case_name, key):
    model, ids, meta = golden
    case, settings = load_file(GOLDEN / f"{case_name}.safetensors"), meta[key]
    prompt = case["x_step0"][:, : settings["prompt_len"]]
    seen = []
    run = generate_text(
        model, prompt, ids, gen_length=settings["gen_length"], block_length=settings["block_length"],
        steps=settings["steps"], temperature=settings["temperature"], cfg_scale=settings["cfg_scale"],
        forward_fn=lambda x: (seen.append(x.clone()), forward(model, x))[1],
    )
    steps = list(run)
    assert [s.committed for s in steps] == case["committed_per_step"].tolist() == settings["committed_per_step"]
    for k, step in enumerate(steps):
        x = seen[k][:1]
        assert torch.equal(x, case[f"x_step{k}"]), k
        if settings["cfg_scale"] > 0:
            assert torch.equal(seen[k][1:], case[f"uncond_x_step{k}"]), k
            assert _diff(step.logits, case[f"guided_logits_step{k}"]) <= TOL, k
            with torch.no_grad():
                both = forward(model, seen[k])
            assert _diff(both[:1], case[f"cond_logits_step{k}"]) <= TOL
            assert _diff(both[1:], case[f"uncond_logits_step{k}"]) <= TOL
        else:
            assert _diff(step.logits, case[f"logits_step{k}"]) <= TOL, k
    assert torch.equal(steps[-1].x, case["final_ids"])


@needs_golden
def test_t2i_prompt_and_sampler_trace(golden):
    model, ids, meta = golden
    case, settings = load_file(GOLDEN / "case_t2i.safetensors"), meta["t2i"]
    n = settings["n_img"]
    row, padding = t2i_prompt(settings["prompt_word_ids"][0], torch.full((n,), ids.mask), ids)
    assert torch.equal(row, case["cond_input_ids"][0]) and torch.equal(padding, case["cond_attention_mask"][0])
    urow, upadding = t2i_prompt([], torch.full((n,), ids.mask), ids)
    assert torch.equal(urow, case["uncond_input_ids"][0]) and torch.equal(upadding, case["uncond_attention_mask"][0])
    steps, inputs = [], []
    with torch.no_grad():
        out = t2i_generate(
            model, ids, settings["prompt_word_ids"], n, steps=settings["steps"],
            guidance_scale=settings["guidance_scale"], temperature=settings["temperature"],
            generator=torch.Generator().manual_seed(settings["generator_seed"]), on_step=steps.append,
            on_forward=lambda batch, pad: inputs.append((batch.clone(), pad.clone())),
        )
    for k, step in enumerate(steps):
        batch, pad = inputs[k]
        assert torch.equal(batch[:1], case[f"cond_x_step{k}"]) and torch.equal(batch[1:], case[f"uncond_x_step{k}"])
        bias = pad[:, :, None].bool() & pad[:, None, :].bool()
        assert torch.equal(bias, case["attention_bias"])
        assert _diff(step.logits, case[f"guided_logits_step{k}"]) <= TOL, k
        assert torch.equal(step.draws, case[f"sampled_ids_step{k}"]), k
        gumbel = -torch.log(torch.log(step.uniform.clamp(min=1e-20)).neg().clamp(min=1e-20))
        assert _diff(gumbel, case[f"gumbel_step{k}"]) <= 1e-6, k
    assert [int(s.mask_len) for s in steps] == case["mask_len_per_step"].tolist() == settings["mask_len_per_step"]
    assert [s.temperature for s in steps] == pytest.approx(settings["mask_temperature_per_step"])
    assert torch.equal(out, case["final_image_ids"])
    final, _ = t2i_prompt(settings["prompt_word_ids"][0], torch.where(steps[-1].state < 0, ids.mask,
                                                                       steps[-1].state + ids.offset)[0], ids)
    assert torch.equal(final, case["final_input_ids"][0])


def test_real_reserved_ids():
    """Upstream's reserved_token_mapping (126084 … 126094) from LLaDA's BOS 126080."""
    ids = MmadaIds(bos=126080, eos=126081, mask=126336, offset=126349, codebook_size=8192, start_header=0,
                   end_header=0, eot_id=0)
    expected = {"soi": 126084, "eoi": 126085, "sov": 126086, "eov": 126087, "t2i": 126088, "mmu": 126089,
                "t2v": 126090, "v2v": 126091, "lvg": 126092, "ipad": 126093, "r2i": 126094}
    assert {name: ids.reserved(name) for name in expected} == expected


def test_commit_counts_and_block_steps():
    assert transfer_counts(6, 4) == [2, 2, 1, 1]  # the remainder rule
    assert block_steps(512, 128, 256) == [64] * 4  # upstream's defaults
    assert block_steps(512, 128, 6) == [2, 2, 1, 1]  # not a multiple: spread, earlier blocks first
    assert block_steps(512, 128, 1) == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="multiple of the block length"):
        block_steps(100, 64, 8)


def test_long_t2i_text_is_cut_and_chat_template():
    ids = MmadaIds(bos=100, eos=101, mask=116, offset=120, codebook_size=64, start_header=117, end_header=118,
                   eot_id=119, max_text_len=5)
    row, padding = t2i_prompt(list(range(10)), torch.full((2,), 116), ids)
    assert row.tolist() == [ids.reserved("t2i"), 100, 0, 1, 2, 101, ids.reserved("soi"), 116, 116,
                            ids.reserved("eoi")]
    assert padding.tolist() == [1] * 10
    text = chat_text([("user", " hi \n")], "<s>")
    assert text == (
        "<s><|start_header_id|>user<|end_header_id|>\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    )


def test_full_size_names_and_shapes_match_upstream():
    """MMaDA-8B's 291 tensors (8.08B params) as upstream's MMadaModelLM builds them, via the key rename."""
    from transformers import LlamaForCausalLM

    data = json.loads(DATA.read_text())
    with torch.device("meta"):
        model = LlamaForCausalLM(llama_config(data["mmada_config"]))
    ours = {to_official(k): list(v.shape) for k, v in model.state_dict().items()}
    assert ours == data["names_shapes"]
    assert len(ours) == 291 and data["n_params"] == 8_082_690_048
    import re

    for official in data["names_shapes"]:  # the loader's rename is the inverse of to_official
        hits = [p for p in KEY_MAPPING if re.match(p, official)]
        assert len(hits) == 1, official
        assert to_official(re.sub(hits[0], KEY_MAPPING[hits[0]], official)) == official


# -- adapter (tiny twin) ---------------------------------------------------------------------------
def test_chat_streams_one_chunk_per_block_and_thinking_prompt(manager, tiny_catalog):
    from umm.control import RunControl
    from umm.types import Message, UnderstandRequest

    params = {"gen_length": 32, "block_length": 8, "steps": 8, "temperature": 1.0}
    progress = []
    control = RunControl(on_progress=lambda done, total, what: progress.append((done, total)))
    request = UnderstandRequest([Message("user", "hello there")], params=params, seed=3)
    chunks = list(manager.understand("tiny-mmada", request, control))
    assert 1 <= len(chunks) <= 4 and all(chunks)
    assert progress[-1] == (8, 8) and len(progress) == 8
    adapter = manager._resident
    text = adapter.chat_prompt([Message("user", "why?")], thinking=True)
    assert "<think> reasoning process here </think> answer here\nwhy?<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n")
    assert "<think>" not in adapter.chat_prompt([Message("user", "why?")])
    from umm.catalog import load_catalog

    mixcot = load_catalog().get("mmada-8b-mixcot").capability("understand")
    assert mixcot.validate({"thinking": True})["thinking"] is True
