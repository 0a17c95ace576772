"""Emu3.5 port parity with golden outputs of upstream baaivision/Emu3.5 (fp32, CPU) and full-size names.

The golden folder (../shared/golden/emu3_5, see its README) holds a tiny LLM and IBQ tokenizer in the
official naming, one LLM forward, one IBQ round trip, real-vocabulary prompt ids and three sampling
traces (T2I with a fixed size, X2I, T2I in "auto" size). Everything loads through the port's own
loaders; floats must match to 1e-4, ids / codes / modes exactly, uint8 images to +-1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED
from PIL import Image
from safetensors.torch import load_file

from umm.ports.emu3_5 import Emu35Tokenizer, Settings, Trace, load_llm, qwen3_config, sample, smart_resize
from umm.ports.emu3_5.ibq import IBQ, load_ibq, to_image, to_pixels
from umm.ports.emu3_5.prompts import t2i_prompts, x2i_prompts
from umm.ports.emu3_5.tokenizer import VISION_TOKENS_FILE, visual_token
from umm.ports.emu3_5.vocab import write_tokenizer_files

GOLDEN = SHARED / "golden" / "emu3_5"
DATA = Path(__file__).resolve().parent / "data"
TOL = 1e-4

pytestmark = pytest.mark.skipif(
    not (GOLDEN / "meta.json").is_file(),
    reason=f"Emu3.5 golden data not found at {GOLDEN} (../shared next to the repo)",
)


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((GOLDEN / "meta.json").read_text())


@pytest.fixture(scope="module")
def llm():
    return load_llm(GOLDEN / "model", dtype=torch.float32)


@pytest.fixture(scope="module")
def vq(tmp_path_factory) -> IBQ:
    """The IBQ loaded as a user gets it: official model.ckpt -> ``umm convert`` -> safetensors."""
    from umm.convert import convert_file

    folder = tmp_path_factory.mktemp("vq")
    torch.save(load_file(GOLDEN / "vision_tokenizer" / "model.safetensors"), folder / "model.ckpt")
    return load_ibq(GOLDEN / "vision_tokenizer" / "config.yaml", convert_file(folder / "model.ckpt"))


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory, meta) -> Emu35Tokenizer:
    """The golden tiny vocabulary: the 256 byte tokens, the 211 specials, then K visual tokens."""
    folder = tmp_path_factory.mktemp("tok")
    write_tokenizer_files(folder, meta["vq_config"]["n_embed"])
    return Emu35Tokenizer.from_dir(folder)


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def _u8(image: Image.Image, ref: torch.Tensor) -> int:
    return int(np.abs(np.asarray(image).astype(int) - ref.numpy().astype(int)).max())


def test_llm_forward_matches(llm):
    case = load_file(GOLDEN / "case_llm.safetensors")
    with torch.no_grad():
        logits = llm(case["input_ids"]).logits
    assert _diff(logits, case["logits"]) <= TOL


def test_qwen3_config_reads_every_size(meta):
    config = qwen3_config(meta["llm_config"])
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "rms_norm_eps", "max_position_embeddings"):
        assert getattr(config, key) == meta["llm_config"][key], key
    assert config.rope_parameters["rope_theta"] == meta["llm_config"]["rope_theta"]
    assert not config.tie_word_embeddings and not config.attention_bias


def test_vq_roundtrip_matches(vq, meta):
    case = load_file(GOLDEN / "case_vq.safetensors")
    resized = smart_resize(Image.fromarray(case["image_uint8"].numpy()), meta["vq_case"]["image_area"])
    assert np.array_equal(np.asarray(resized), case["resized_uint8"].numpy())
    pixels = to_pixels(resized)
    assert _diff(pixels, case["pixel_values"]) <= TOL
    with torch.no_grad():
        enc = vq.encoder(pixels)
        z = vq.quant_conv(enc)
        codes = vq.encode(pixels)
        decoded = vq.decode(case["codes"][None])
        assert _diff(enc, case["encoder_out"]) <= TOL
        assert _diff(z, case["quant_conv_out"]) <= TOL
        assert _diff(vq.quantize.logits(z), case["quantizer_logits"]) <= TOL
        assert torch.equal(codes[0], case["codes"])
        assert _diff(vq.quantize.lookup(codes), case["quantized"]) <= TOL
        assert _diff(decoded, case["decoded"]) <= TOL
    assert _u8(to_image(decoded[0]), case["decoded_uint8"]) <= 1


def test_prompt_layout_in_real_ids(tmp_path, meta):
    """Real-vocabulary ids: a subset of emu3.tiktoken holding every merge these prompts go through.

    BPE with a subset that contains the whole merge path of a text gives the same ids as the full
    vocabulary, so this checks the pattern, the BPE, the special-token numbering and the image block.
    """
    (tmp_path / "emu3.tiktoken").write_bytes((DATA / "emu3_5_prompt_vocab.tiktoken").read_bytes())
    lines = ["<|image token|>", "<|image start|>", "<|image end|>", *(visual_token(c) for c in range(131072))]
    (tmp_path / VISION_TOKENS_FILE).write_text("\n".join(lines))
    tok = Emu35Tokenizer.from_dir(tmp_path)
    case = load_file(GOLDEN / "case_prompt_layout.safetensors")
    layout = meta["prompt_layout"]
    assert len(tok) == 282926 and tok.bov == 151854 and tok.ids["BOI"] == 151852
    cond, uncond = t2i_prompts(layout["t2i_question"])
    assert tok.encode(cond) == case["t2i_ids"].tolist()
    assert tok.encode(uncond) == case["t2i_uncond_ids"].tolist()
    block = tok.image_ids(case["x2i_image_codes"])
    assert block == case["x2i_image_ids"].tolist()
    assert tok.image_string(case["x2i_image_codes"]) == layout["x2i_image_string"]
    cond, uncond = x2i_prompts(layout["x2i_question"], [layout["x2i_image_string"]])
    assert tok.encode(cond) == case["x2i_ids"].tolist()
    assert tok.encode(uncond) == case["x2i_uncond_ids"].tolist()
    for ratio, ids in layout["aspect_ratio_hw_token_ids"].items():
        h, w = meta["official_defaults"]["t2i"]["aspect_ratios"][ratio].split("*")
        assert tok.encode(f"{h}*{w}") == ids


def _run_trace(llm, tok, meta, name, static_cache=False, **kwargs):
    case = load_file(GOLDEN / f"case_{name}.safetensors")
    spec = meta["traces"][name]
    params = spec["sampling_params"]
    trace = Trace()
    target = tuple(spec["target_hw"]) if spec["target_hw"][0] else None
    out = sample(
        llm, tok, case["input_ids"].tolist(), case["uncond_ids"].tolist(),
        guidance_scale=spec["cfg_scale"],
        text=Settings(params["text_temperature"], params["text_top_k"], params["text_top_p"]),
        image=Settings(params["image_temperature"], params["image_top_k"], params["image_top_p"]),
        max_new_tokens=params["max_new_tokens"], generator=torch.Generator().manual_seed(spec["seed"]),
        target_hw=target, trace=trace, static_cache=static_cache, **kwargs,
    )
    return case, spec, out, trace


@pytest.mark.parametrize(("name", "static_cache"), [("t2i", False), ("x2i", False), ("t2i_auto", False),
                                                   ("t2i", True)])
def test_sampling_trace_matches(llm, vq, tiny_tokenizer, meta, name, static_cache):
    """Every trace with the dynamic KV cache, and T2I again with the static cache served on GPUs."""
    tok = tiny_tokenizer
    case, spec, out, trace = _run_trace(llm, tok, meta, name, static_cache)
    # the prompts: upstream's strings, byte tokens in the tiny vocabulary, plus the forced <|image start|>
    assert [*tok.encode(spec["prompt"]), tok.ids["BOI"]] == case["input_ids"].tolist()
    assert tok.encode(spec["uncond_prompt"]) == case["uncond_ids"].tolist()
    assert out == case["generated_ids"].tolist()
    assert trace.modes == case["step_mode"].tolist()
    scores, ref = torch.stack(trace.scores), case["step_scores"]
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(scores), finite)
    assert _diff(scores[finite], ref[finite]) <= TOL
    assert _diff(torch.stack(trace.cond_logits), case["step_cond_logits"]) <= TOL
    assert _diff(torch.stack(trace.uncond_logits), case["step_uncond_logits"]) <= TOL
    assert [n > 0 for n in trace.uncond_len] == case["step_uncond_computed"].tolist()
    assert trace.uncond_len == case["step_uncond_len"].tolist()
    assert trace.uncond_used == case["step_uncond_used"].tolist()
    assert trace.uncond_ids == case["final_uncond_ids"].tolist()
    if "image_codes" in case:
        h, w = case["image_codes"].shape
        start = out.index(tok.ids["IMG"]) + 1
        rows = [out[start + r * (w + 1): start + r * (w + 1) + w] for r in range(h)]
        codes = torch.tensor(rows) - tok.bov
        assert torch.equal(codes, case["image_codes"])
        with torch.no_grad():
            image = to_image(vq.decode(codes[None])[0])
        assert _u8(image, case["decoded_image_uint8"]) <= 1


@pytest.mark.parametrize(("name", "static_cache"), [("t2i", False), ("x2i", False), ("t2i", True)])
def test_batched_cfg_matches_up_to_the_image_end(llm, tiny_tokenizer, meta, name, static_cache):
    """Both branches in one batch-2 forward (left padding, 4-D mask): the same trace up to <|image end|>."""
    case, _, out, trace = _run_trace(llm, tiny_tokenizer, meta, name, static_cache, batched=True,
                                     stop_at_image_end=True)
    n = len(out)
    assert out[-1] == tiny_tokenizer.ids["EOI"] and out == case["generated_ids"].tolist()[:n]
    scores, ref = torch.stack(trace.scores), case["step_scores"][:n]
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(scores), finite)
    assert _diff(scores[finite], ref[finite]) <= TOL
    assert _diff(torch.stack(trace.uncond_logits), case["step_uncond_logits"][:n]) <= TOL
    assert trace.uncond_len == case["step_uncond_len"].tolist()[:n]


def test_forced_image_start_is_the_same_batched_or_not(llm, tiny_tokenizer, meta):
    """The adapter's path: the prompt without <|image start|>, which is then forced as the first token."""
    case = load_file(GOLDEN / "case_t2i.safetensors")
    kwargs = dict(guidance_scale=5.0, text=Settings(), image=Settings(1.0, 16, 0.9), max_new_tokens=30,
                  target_hw=(3, 4), start_image=True, stop_at_image_end=True)
    prompt, uncond = case["input_ids"].tolist()[:-1], case["uncond_ids"].tolist()
    runs = [sample(llm, tiny_tokenizer, prompt, uncond, generator=torch.Generator().manual_seed(s), batched=b, **kwargs)
            for b in (False, True) for s in (1, 2)]
    assert runs[0] == runs[2] and runs[1] == runs[3] and runs[0] != runs[1]
    assert runs[0][0] == tiny_tokenizer.ids["BOI"] and runs[0][-1] == tiny_tokenizer.ids["EOI"]
    assert len(runs[0]) == 1 + 4 + 3 * 5  # <|image start|>, "3*4" + <|image token|>, 3 rows + ends


def test_x2i_reference_and_prompts(vq, tiny_tokenizer, meta):
    tok, spec = tiny_tokenizer, meta["traces"]["x2i"]
    case = load_file(GOLDEN / "case_x2i.safetensors")
    resized = smart_resize(Image.fromarray(case["ref_image_uint8"].numpy()), spec["image_area"])
    assert np.array_equal(np.asarray(resized), case["ref_resized_uint8"].numpy())
    pixels = to_pixels(resized)
    assert _diff(pixels, case["ref_pixel_values"]) <= TOL
    with torch.no_grad():
        codes = vq.encode(pixels)[0]
    assert torch.equal(codes, case["ref_codes"])
    block = tok.image_string(codes)
    assert block == spec["ref_image_string"]
    question = meta["prompt_layout"]["x2i_question"]
    cond, uncond = x2i_prompts(question, [block])
    assert cond == spec["prompt"] and uncond == spec["uncond_prompt"]


def test_full_size_names_and_shapes_match_upstream():
    """Qwen3ForCausalLM / our IBQ on the meta device vs upstream's Emu3ForCausalLM / IBQ (test data)."""
    from accelerate import init_empty_weights
    from transformers import Qwen3ForCausalLM

    ref = json.loads((DATA / "emu3_5_names_shapes.json").read_text())
    with init_empty_weights():
        llm = Qwen3ForCausalLM(qwen3_config(ref["llm_config"]))
    assert {k: list(v.shape) for k, v in llm.state_dict().items()} == ref["llm"]
    with torch.device("meta"):
        vq = IBQ(**ref["ibq_config"])
    assert {k: list(v.shape) for k, v in vq.state_dict().items()} == ref["ibq"]
