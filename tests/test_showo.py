"""Show-o port: golden parity with upstream (showlab/Show-o), full-size names/shapes, KV cache, inpainting.

Golden data: ../shared/golden/showo (tiny random Showo saved by upstream's own save_pretrained, its
prompting, masks, forward logits, a 4-step guided MaskGIT trace and greedy understanding); see its
README. Every float within 1e-4, every id exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SHARED
from safetensors.torch import load_file

from umm.ports.maskgit import UNKNOWN
from umm.ports.showo.generate import forward, image_ids, mmu_tokens, t2i_generate
from umm.ports.showo.model import ShowoIds, load_language_model, phi_config, read_json
from umm.ports.showo.prompting import mmu_attention, mmu_row, t2i_attention, t2i_batch, t2i_row

GOLDEN = SHARED / "golden" / "showo"
DATA = Path(__file__).parent / "data" / "showo_names_shapes.json"
TOL = 1e-4

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "pytorch_model.safetensors").is_file(), reason=f"Show-o golden data not found at {GOLDEN}"
)


@pytest.fixture(scope="module")
def golden():
    config = read_json(GOLDEN / "config.json")
    llm = read_json(GOLDEN / config["llm_model_path"] / "config.json")
    meta = read_json(GOLDEN / "meta.json")
    special = meta["special_token_ids"]
    ids = ShowoIds.from_config(config, special["<|sot|>"], special["<|eot|>"], max_text_len=meta["max_seq_length"])
    return load_language_model(GOLDEN, llm, torch.float32), ids, meta


def _texts(case) -> list[list[int]]:
    return [row[:n].tolist() for row, n in zip(case["prompt_text_ids"], case["prompt_text_lens"], strict=True)]


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@needs_golden
def test_ids_follow_the_config(golden):
    _, ids, meta = golden
    special = meta["special_token_ids"]
    assert ids.pad == special["<|pad|>"] and ids.soi == special["<|soi|>"] and ids.eoi == special["<|eoi|>"]
    assert ids.t2i == special["<|t2i|>"] and ids.mmu == special["<|mmu|>"]
    assert ids.offset == meta["image_token_offset"] and ids.mask == meta["mask_token_id"]


@needs_golden
def test_t2i_prompt_mask_and_logits(golden):
    model, ids, _ = golden
    case = load_file(GOLDEN / "case_t2i.safetensors")
    cond = t2i_batch(_texts(case), case["image_tokens"], ids)
    uncond = t2i_batch([[], []], case["image_tokens"], ids)
    assert torch.equal(cond, case["input_ids"]) and torch.equal(uncond, case["uncond_input_ids"])
    rows = torch.cat([cond, uncond])
    allowed = t2i_attention(rows, ids)
    assert torch.equal(allowed, case["attention_allowed"])
    with torch.no_grad():
        assert _diff(forward(model, rows, allowed), case["logits"]) <= TOL


@needs_golden
def test_t2i_sampling_trace(golden):
    """Every step of the 4-step guided trace (inpainting row included) and the returned codes."""
    model, ids, meta = golden
    case = load_file(GOLDEN / "case_t2i.safetensors")
    trace = load_file(GOLDEN / "case_t2i_sampling.safetensors")
    settings = meta["t2i"]
    codes = torch.where(case["image_tokens"] == ids.mask, UNKNOWN, case["image_tokens"] - ids.offset)
    steps, inputs = [], []
    with torch.no_grad():
        out = t2i_generate(
            model, ids, _texts(case), codes, steps=settings["steps"], guidance_scale=settings["guidance_scale"],
            temperature=settings["temperature"], generator=torch.Generator().manual_seed(settings["generator_seed"]),
            on_step=steps.append, on_forward=lambda batch: inputs.append(batch.clone()),
        )
    assert len(steps) == settings["steps"]
    for k, step in enumerate(steps):
        assert torch.equal(inputs[k], trace[f"step{k}_model_input_ids"]), k
        assert _diff(step.logits, trace[f"step{k}_guided_logits"]) <= TOL, k
        assert torch.equal(step.draws, trace[f"step{k}_sampled_codes"]), k
        assert _diff(step.uniform, trace[f"step{k}_gumbel_uniform"]) <= 1e-6, k
        assert step.temperature == pytest.approx(trace[f"step{k}_temperature"].item()), k
        assert torch.equal(step.mask_len.float(), trace[f"step{k}_mask_len"]), k
        assert _diff(step.confidence, trace[f"step{k}_confidence"]) <= TOL, k
        assert torch.equal(step.remask, trace[f"step{k}_remask"]), k
        state = t2i_batch(_texts(case), image_ids(step.state, ids), ids)
        assert torch.equal(state, trace[f"step{k}_output_input_ids"]), k
    assert torch.equal(out, trace["final_codes"])
    assert torch.equal(t2i_batch(_texts(case), image_ids(steps[-1].state, ids), ids), trace["final_input_ids"])
    known = codes != UNKNOWN  # inpainting: given codes come back unchanged
    assert known.any() and torch.equal(out[known], codes[known])


@needs_golden
@pytest.mark.parametrize("use_cache", [False, True])
def test_understanding_prompt_logits_and_greedy_tokens(golden, use_cache):
    model, ids, meta = golden
    case = load_file(GOLDEN / "case_mmu.safetensors")
    prompt = mmu_row(case["image_codes"][0] + ids.offset, case["question_ids"][0].tolist(), ids)
    assert torch.equal(prompt, case["input_ids"][0])
    allowed = mmu_attention(prompt[None], ids)
    assert torch.equal(allowed, case["attention_allowed"])
    with torch.no_grad():
        assert _diff(forward(model, prompt[None], allowed), case["logits"]) <= TOL
    steps = list(mmu_tokens(model, prompt, ids, max_new_tokens=meta["mmu"]["max_new_tokens"], use_cache=use_cache))
    assert [t for t, _ in steps] == case["greedy_ids"].tolist()
    assert _diff(torch.stack([logits for _, logits in steps]), case["greedy_step_logits"]) <= TOL


@needs_golden
def test_kv_cache_gives_the_same_sampled_tokens(golden):
    """Sampled decoding (temperature 1, seeded) over 24 tokens: the cache changes nothing but speed."""
    model, ids, _ = golden
    case = load_file(GOLDEN / "case_mmu.safetensors")
    prompt = case["input_ids"][0]
    runs = []
    for use_cache in (False, True):
        generator = torch.Generator().manual_seed(7)
        runs.append(list(mmu_tokens(model, prompt, ids, max_new_tokens=24, temperature=1.0, generator=generator,
                                    use_cache=use_cache)))
    assert [t for t, _ in runs[0]] == [t for t, _ in runs[1]]
    assert max(_diff(a, b) for (_, a), (_, b) in zip(*runs, strict=True)) <= 1e-5


def test_real_checkpoint_ids():
    """The id table of the README for show-o-512x512 (configs/showo_demo_512x512.yaml, phi-1_5 BOS = EOS)."""
    config = {"vocab_size": 58498, "llm_vocab_size": 50295, "codebook_size": 8192, "num_vq_tokens": 1024}
    ids = ShowoIds.from_config(config, 50256, 50256)
    assert (ids.pad, ids.soi, ids.eoi, ids.t2i, ids.mmu) == (50295, 50296, 50297, 50300, 50301)
    assert (ids.offset, ids.mask, ids.max_text_len) == (50305, 58497, 128)


def test_long_prompts_are_cut_as_upstream():
    ids = ShowoIds(llm_vocab_size=100, codebook_size=64, mask=174, bos=90, eos=90, num_image_tokens=4,
                   max_text_len=6)
    image = torch.full((4,), 174)
    row = t2i_row(list(range(10)), image, ids)
    # [<|t2i|>, BOS] + text cut to T - 2 ids, then EOS: T + 1 slots before <|soi|>
    assert row[:7].tolist() == [ids.t2i, 90, 0, 1, 2, 3, 90]
    short = t2i_row([5], image, ids)
    assert short[:7].tolist() == [ids.pad, ids.pad, ids.pad, ids.t2i, 90, 5, 90]
    assert t2i_row([90, 5], image, ids)[:7].tolist() == short[:7].tolist()  # BOS not doubled


def test_full_size_names_and_shapes_match_upstream():
    """The real checkpoint's 437 tensors (1.448B params) as upstream's Showo builds them, on the meta device."""
    from transformers import PhiForCausalLM

    data = json.loads(DATA.read_text())
    with torch.device("meta"):
        model = PhiForCausalLM(phi_config(data["phi_1_5_config"], data["showo_config"]["vocab_size"]))
    ours = {"showo." + k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == data["names_shapes"]
    assert len(ours) == 437
    assert sum(torch.Size(s).numel() for s in ours.values()) == data["n_params"] == 1_448_176_770


# -- adapter (tiny twin) ---------------------------------------------------------------------------
def _loaded(manager):
    from umm.types import GenerateRequest

    manager.generate("tiny-showo", GenerateRequest("a cat", params={"steps": 1}, seed=0))
    return manager._resident


def test_edit_region_from_box_and_mask_image(manager):
    from PIL import Image

    adapter = _loaded(manager)
    grid = adapter.grid
    box = adapter.region(None, {"box_left": 0.5, "box_right": 1.0, "box_top": 0.0, "box_bottom": 0.25})
    expected = torch.zeros(grid, grid, dtype=torch.bool)
    expected[: round(0.25 * grid), round(0.5 * grid):] = True
    assert torch.equal(box, expected.flatten())
    size = adapter.resolution
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, size // 2, size))  # white = change: the left half
    region = adapter.region(mask, {})
    assert region.view(grid, grid)[:, : grid // 2].all() and not region.view(grid, grid)[:, grid // 2:].any()


def test_edit_end_to_end_with_a_mask_image_and_an_empty_region(manager):
    from PIL import Image

    from umm.errors import InputError
    from umm.types import EditRequest

    image = Image.new("RGB", (80, 64), (200, 30, 30))
    mask = Image.new("RGB", (80, 64), (0, 0, 0))
    mask.paste((255, 255, 255), (0, 0, 40, 64))
    result = manager.edit("tiny-showo", EditRequest([image, mask], "a blue cube", params={"steps": 2}, seed=1))
    assert len(result.images) == 1 and result.images[0].mode == "RGB"
    with pytest.raises(InputError, match="covers no image token"):
        manager.edit("tiny-showo", EditRequest([image, Image.new("RGB", (80, 64))], "x", params={"steps": 2}, seed=1))
    with pytest.raises(InputError, match="covers no image token"):
        params = {"steps": 2, "box_left": 0.5, "box_right": 0.5}
        manager.edit("tiny-showo", EditRequest([image], "x", params=params, seed=1))
    # the next request works
    assert manager.edit("tiny-showo", EditRequest([image], "x", params={"steps": 1}, seed=1)).images


def test_kv_cache_bench_runs_and_agrees(tmp_path):
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench"
    sys.path.insert(0, str(bench))
    try:
        import showo_kv_cache
    finally:
        sys.path.remove(str(bench))
    record = showo_kv_cache.main(["--quick", "--out-dir", str(tmp_path)])
    assert record["identical_tokens"] and (tmp_path / "showo_kv_cache.json").is_file()
