"""Janus 1.3B: the original-checkpoint key mapping covers the model exactly and round-trips."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from umm.adapters.janus_v1 import JanusV1Adapter, build_processor, janus_config, original_to_hf


@pytest.fixture(scope="module")
def tiny_dir(tiny_catalog) -> Path:
    return Path(tiny_catalog.get("tiny-janus-v1").repo)


def _hf_model(directory: Path, seed: int = 0):
    from transformers import JanusForConditionalGeneration

    original = json.loads((directory / "config.json").read_text())
    config = janus_config(original, build_processor(directory, original).tokenizer)
    torch.manual_seed(seed)
    return JanusForConditionalGeneration(config).eval()


# An inverse mapping written independently of the adapter: HF name -> original name, by table.
_L = r"^model\.vision_model\.encoder\.layers\.(\d+)\."
_B = r"vision_model.vision_tower.blocks.\1."
_ENC, _DEC = r"gen_vision_model.encoder.conv_blocks.\1.", r"gen_vision_model.decoder.conv_blocks.\1."
_TO_ORIGINAL = [
    (r"^model\.language_model\.(.*)$", r"language_model.model.\1"),
    (r"^lm_head\.weight$", "language_model.lm_head.weight"),
    (r"^model\.vision_model\.embeddings\.position_embedding\.weight$", "vision_model.vision_tower.pos_embed"),
    (r"^model\.vision_model\.embeddings\.patch_embedding\.(\w+)$", r"vision_model.vision_tower.patch_embed.proj.\1"),
    (r"^model\.vision_model\.post_layernorm\.(\w+)$", r"vision_model.vision_tower.norm.\1"),
    (_L + r"layer_norm([12])\.(\w+)$", _B + r"norm\2.\3"),
    (_L + r"self_attn\.projection_layer\.(\w+)$", _B + r"attn.proj.\2"),
    (_L + r"mlp\.(fc[12])\.(\w+)$", _B + r"mlp.\2.\3"),
    (r"^model\.vqmodel\.encoder\.down\.(\d+)\.block\.(\d+)\.(.*)$", _ENC + r"res.\2.\3"),
    (r"^model\.vqmodel\.encoder\.down\.(\d+)\.(attn|downsample)\.(.*)$", _ENC + r"\2.\3"),
    (r"^model\.vqmodel\.decoder\.up\.(\d+)\.block\.(\d+)\.(.*)$", _DEC + r"res.\2.\3"),
    (r"^model\.vqmodel\.decoder\.up\.(\d+)\.(attn|upsample)\.(.*)$", _DEC + r"\2.\3"),
    (r"^model\.vqmodel\.(encoder|decoder)\.mid\.block_1\.(.*)$", r"gen_vision_model.\1.mid.0.\2"),
    (r"^model\.vqmodel\.(encoder|decoder)\.mid\.attn_1\.(.*)$", r"gen_vision_model.\1.mid.1.\2"),
    (r"^model\.vqmodel\.(encoder|decoder)\.mid\.block_2\.(.*)$", r"gen_vision_model.\1.mid.2.\2"),
    (r"^model\.vqmodel\.(.*)$", r"gen_vision_model.\1"),
    (r"^model\.aligner\.fc1\.(\w+)$", r"aligner.layers.0.\1"),
    (r"^model\.aligner\.hidden_layers\.0\.(\w+)$", r"aligner.layers.2.\1"),
    (r"^model\.generation_aligner\.fc1\.(\w+)$", r"gen_aligner.layers.0.\1"),
    (r"^model\.generation_aligner\.hidden_layers\.0\.(\w+)$", r"gen_aligner.layers.2.\1"),
    (r"^model\.generation_head\.proj_out\.(\w+)$", r"gen_head.output_mlp_projector.\1"),
    (r"^model\.generation_head\.vision_head\.(\w+)$", r"gen_head.vision_head.\1"),
    (r"^model\.generation_embeddings\.weight$", "gen_embed.weight"),
]
_QKV = re.compile(r"^model\.vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(\w+)$")


def _to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, fused = {}, {}
    for key, tensor in state.items():
        match = _QKV.match(key)
        if match:
            layer, which, param = match.groups()
            fused.setdefault(f"vision_model.vision_tower.blocks.{layer}.attn.qkv.{param}", {})[which] = tensor
            continue
        for pattern, repl in _TO_ORIGINAL:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = tensor
                break
        else:
            raise AssertionError(f"the test's inverse mapping has no rule for {key}")
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    out["vision_model.vision_tower.pos_embed"] = out["vision_model.vision_tower.pos_embed"][None]
    return out


def test_the_tiny_checkpoint_is_in_the_original_layout(tiny_dir):
    assert sorted(p.name for p in tiny_dir.iterdir() if not p.name.startswith(".")) == [
        "config.json", "model.safetensors", "preprocessor_config.json", "processor_config.json",
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
    ]
    assert json.loads((tiny_dir / "config.json").read_text())["model_type"] == "multi_modality"
    keys = set(load_file(tiny_dir / "model.safetensors"))
    assert not any(k.startswith("model.") for k in keys)
    assert "vision_model.vision_tower.blocks.0.attn.qkv.weight" in keys
    assert "gen_vision_model.quantize.codebook_used" in keys
    assert any(k.startswith("vision_model.vision_tower.attn_pool.") for k in keys)


def test_mapping_covers_every_parameter_exactly(tiny_dir):
    renamed = original_to_hf(load_file(tiny_dir / "model.safetensors"))
    expected = _hf_model(tiny_dir).state_dict()
    assert set(renamed) == set(expected), (
        f"missing: {sorted(set(expected) - set(renamed))}, unexpected: {sorted(set(renamed) - set(expected))}"
    )
    assert all(renamed[k].shape == expected[k].shape for k in expected)


def test_unknown_original_keys_are_refused():
    with pytest.raises(KeyError, match="unexpected parameter"):
        original_to_hf({"language_model.lm_head.weight": torch.zeros(2, 2), "mystery.weight": torch.zeros(1)})


def test_hf_weights_round_trip_through_the_original_naming(tiny_dir, tmp_path):
    reference = _hf_model(tiny_dir, seed=123)
    reference.save_pretrained(tmp_path / "hf")
    saved = load_file(tmp_path / "hf" / "model.safetensors")
    repo = tmp_path / "original"
    shutil.copytree(tiny_dir, repo, ignore=shutil.ignore_patterns("model.safetensors", ".*"))
    save_file({k: v.contiguous() for k, v in _to_original(saved).items()}, repo / "model.safetensors")

    from umm.catalog import load_catalog
    from umm.tiny import tiny_spec

    adapter = JanusV1Adapter(tiny_spec(load_catalog().get("janus-1.3b"), repo))
    adapter.load(torch.device("cpu"), torch.float32)
    loaded = adapter.model.state_dict()
    for key, tensor in reference.state_dict().items():
        assert torch.equal(loaded[key], tensor), key

    ids = torch.tensor([[1, 5, 9, 12, 40, 7]])
    pixels = torch.randn(1, 3, 64, 64)
    image_ids = torch.tensor([[adapter.processor.tokenizer.bos_token_id] + [adapter.model.config.image_token_id] * 16])
    with torch.inference_mode():
        assert torch.equal(reference(input_ids=ids).logits, adapter.model(input_ids=ids).logits)
        assert torch.equal(
            reference(input_ids=image_ids, pixel_values=pixels).logits,
            adapter.model(input_ids=image_ids, pixel_values=pixels).logits,
        )
        codes = torch.randint(0, 64, (2, 16))
        assert torch.equal(reference.decode_image_tokens(codes), adapter.model.decode_image_tokens(codes))


def test_processor_reproduces_the_original_prompt_format(tiny_dir):
    original = json.loads((tiny_dir / "config.json").read_text())
    processor = build_processor(tiny_dir, original)
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cube."}]},
        {"role": "user", "content": [{"type": "text", "text": "Colour?"}]},
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    eos = processor.tokenizer.eos_token
    assert prompt == (
        f"<|User|>: <image_placeholder>\nWhat is this?\n\n<|Assistant|>: A cube.{eos}"
        "<|User|>: Colour?\n\n<|Assistant|>:"
    )
    ids = processor(text="<|User|>: Colour?\n\n<|Assistant|>:", return_tensors="pt")["input_ids"][0]
    assert ids[0].item() == processor.tokenizer.bos_token_id  # the original tokenizer.encode adds BOS
    assert list(processor.image_processor.image_mean) == [0.5, 0.5, 0.5]
