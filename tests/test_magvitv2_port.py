"""Parity of the MagViTv2 (LFQ) tokenizer port with golden outputs of the upstream Show-o code (fp32, CPU).

The golden folder holds a tiny tokenizer state dict with the official parameter names plus one
encode -> ids -> decode round trip; see its README.md. The architecture kwargs come from its meta.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from umm.ports.magvitv2 import LookupFreeQuantizer, MagViTv2, corner_table

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "magvitv2"
TOL = 1e-4

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "model.safetensors").is_file(),
    reason=f"MagViTv2 golden data not found at {GOLDEN} (../shared next to the repo)",
)

# same shape family as the golden model, for the tests that need no golden data
TINY = {
    "ch": 32,
    "encoder_ch_mult": (1, 1, 1, 1, 1),
    "encoder_num_res_blocks": (1, 1, 1, 1, 1),
    "decoder_ch_mult": (1, 1, 1, 1, 1),
    "decoder_num_res_blocks": (1, 1, 1, 1, 1),
    "resolution": 64,
}


def _golden_config() -> dict:
    """meta.json's shared encoder/decoder kwargs, spelled as this port's config keys."""
    kw = json.loads((GOLDEN / "meta.json").read_text())["encoder_decoder_kwargs"]
    config = {"ch": kw["ch"], "resolution": kw["resolution"]}
    for part in ("encoder", "decoder"):
        config[f"{part}_ch_mult"] = kw["ch_mult"]
        config[f"{part}_num_res_blocks"] = kw["num_res_blocks"]
    return config


@pytest.fixture(scope="module")
def model() -> MagViTv2:
    return MagViTv2.from_single_file(GOLDEN / "model.safetensors", **_golden_config())


@pytest.fixture(scope="module")
def case() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "case_roundtrip.safetensors")


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def _roundtrip(model: MagViTv2, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        quantized, indices = model.encode(pixels)
        grid = quantized.shape[-2:]
        latent = model.indices_to_latent(indices, (grid[0], grid[1]))
        return {
            "encoder_output": model.encode_features(pixels),
            "quantized": quantized,
            "indices": indices,
            "latent_from_indices": latent,
            "decoded": model.decode(latent),
        }


@needs_golden
def test_roundtrip_matches_golden(model: MagViTv2, case: dict[str, torch.Tensor]) -> None:
    out = _roundtrip(model, case["pixel_values"])
    assert out["indices"].dtype == torch.int64
    assert torch.equal(out["indices"], case["indices"])
    for name in ("encoder_output", "quantized", "latent_from_indices", "decoded"):
        assert _maxdiff(out[name], case[name]) <= TOL, name
    with torch.no_grad():  # the one-call helpers agree with the step-by-step path
        assert _maxdiff(model.decode_indices(case["indices"]), case["decoded"]) <= TOL
        assert _maxdiff(model(case["pixel_values"]), case["decoded"]) <= TOL


@needs_golden
def test_strict_load_has_no_missing_or_unexpected_keys(model: MagViTv2, tmp_path: Path) -> None:
    golden = load_file(GOLDEN / "model.safetensors")
    result = MagViTv2(**_golden_config()).load_state_dict(golden, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert {k: v.shape for k, v in golden.items()} == {k: v.shape for k, v in model.state_dict().items()}
    # the folder route of a showlab/magvitv2-style download: upstream's config.json carries no
    # architecture keys; weights must be safetensors (a pickle-only folder is refused)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2", **_golden_config()}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 pickled weights")
    with pytest.raises(FileNotFoundError, match=r"pickled \.bin weights are not loaded"):
        MagViTv2.from_single_file(tmp_path)
    save_file(golden, tmp_path / "pytorch_model.safetensors")
    from_folder = MagViTv2.from_single_file(tmp_path)
    for name, value in from_folder.state_dict().items():
        assert torch.equal(value, golden[name]), name


@needs_golden
def test_golden_comparison_detects_wrong_bit_order_or_sign(model: MagViTv2, case: dict[str, torch.Tensor]) -> None:
    """A reversed bit order or a flipped latent sign must break parity, so the test above can fail."""
    pixels, reference = case["pixel_values"], case["indices"]
    power_vals = model.quantize.power_vals.clone()
    try:
        model.quantize.power_vals.copy_(power_vals.flip(0))
        assert not torch.equal(_roundtrip(model, pixels)["indices"], reference)
    finally:
        model.quantize.power_vals.copy_(power_vals)
    conv = model.encoder.quant_conv
    try:
        with torch.no_grad():
            conv.weight.neg_()
            conv.bias.neg_()
        flipped = _roundtrip(model, pixels)["indices"]
        # every sign flips, so every id becomes its bitwise complement
        assert torch.equal(flipped, model.codebook_size - 1 - reference)
    finally:
        with torch.no_grad():
            conv.weight.neg_()
            conv.bias.neg_()
    assert torch.equal(_roundtrip(model, pixels)["indices"], reference)


def test_corner_table_and_quantizer_agree() -> None:
    """ids -> latent -> ids is the identity, bit 0 of an id is channel 0, and zero counts as negative."""
    q = LookupFreeQuantizer(4)
    embedding, power_vals = corner_table(4)
    assert power_vals.tolist() == [8, 4, 2, 1]
    assert embedding[0b1010].tolist() == [1.0, -1.0, 1.0, -1.0]
    ids = torch.arange(16).view(2, 8)
    latent = q.indices_to_latent(ids, (2, 4))
    assert latent.shape == (2, 4, 2, 4)
    quantized, back = q(latent * torch.rand_like(latent))  # magnitudes do not matter, signs do
    assert torch.equal(back, ids) and torch.equal(quantized, latent)
    assert q(torch.zeros(1, 4, 1, 1))[1].item() == 0
    with pytest.raises(ValueError, match="square"):
        q.indices_to_latent(ids)


def test_quantizer_is_straight_through() -> None:
    features = torch.randn(2, 13, 3, 5, requires_grad=True)
    quantized, _ = LookupFreeQuantizer(13)(features)
    assert torch.equal(quantized.detach().abs(), torch.ones_like(quantized))
    quantized.sum().backward()
    assert torch.equal(features.grad, torch.ones_like(features))


def test_non_square_images_and_token_roundtrip() -> None:
    torch.manual_seed(0)
    model = MagViTv2(**TINY).eval()
    pixels = torch.rand(2, 3, 64, 32) * 2 - 1
    with torch.no_grad():
        quantized, indices = model.encode(pixels)
        assert quantized.shape == (2, 13, 4, 2) and indices.shape == (2, 8)
        assert indices.min() >= 0 and indices.max() < model.codebook_size == 8192
        assert torch.equal(model.indices_to_latent(indices, (4, 2)), quantized)
        assert model.decode_indices(indices, (4, 2)).shape == pixels.shape


def test_default_config_is_the_released_architecture() -> None:
    with torch.device("meta"):
        model = MagViTv2()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 382
    assert shapes["encoder.down.3.block.0.nin_shortcut.weight"] == (512, 256, 1, 1)
    assert shapes["decoder.up.1.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert shapes["decoder.conv_in.weight"] == (512, 13, 3, 3)
    assert shapes["quantize.embedding"] == (8192, 13)
    assert len(model.encoder.down[4].block) == 4 and len(model.decoder.up[4].block) == 3
    assert not any(".attn." in k for k in shapes)  # attention at resolution 5: never, only mid.attn_1
    assert model.downsample_factor == 16


def test_save_pretrained_roundtrip(tmp_path: Path) -> None:
    model = MagViTv2(**TINY)
    model.save_pretrained(tmp_path)
    loaded, info = MagViTv2.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    reference = model.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, reference[name]), name
    assert loaded.quantize.power_vals.dtype == torch.int64


# -- second golden model: attention inside levels, widths up and down, own decoder multipliers ----------
def _levels_meta() -> dict:
    return json.loads((GOLDEN / "meta.json").read_text())["levels"]


def _levels_config(meta: dict) -> dict:
    """The upstream encoder/decoder kwargs of meta.json spelled as this port's constructor arguments."""
    enc, dec = meta["encoder_kwargs"], meta["decoder_kwargs"]
    shared = ("ch", "attn_resolutions", "resolution", "z_channels")
    assert all(enc[k] == dec[k] for k in shared)  # this port builds both halves from one value of each
    config = {k: enc[k] for k in shared}
    for part, kwargs in (("encoder", enc), ("decoder", dec)):
        config[f"{part}_ch_mult"] = kwargs["ch_mult"]
        config[f"{part}_num_res_blocks"] = kwargs["num_res_blocks"]
    assert config == {k: meta["port_config"][k] for k in config}  # the two spellings agree
    return config


needs_levels = pytest.mark.skipif(
    not (GOLDEN / "model_levels.safetensors").is_file(),
    reason=f"MagViTv2 'levels' golden data not found at {GOLDEN} (../shared next to the repo)",
)


def _levels_cases() -> list[str]:
    return sorted(_levels_meta()["cases"]) if (GOLDEN / "meta.json").is_file() else ["levels"]


@needs_levels
@pytest.mark.parametrize("name", _levels_cases())
def test_levels_model_roundtrip_matches_golden(name: str) -> None:
    meta = _levels_meta()
    model = MagViTv2.from_single_file(GOLDEN / meta["weights"], **_levels_config(meta)).eval()
    case = load_file(GOLDEN / f"case_{name}.safetensors")
    assert list(case["pixel_values"].shape) == meta["cases"][name]["pixel_values"]
    out = _roundtrip(model, case["pixel_values"])
    assert torch.equal(out["indices"], case["indices"])
    for key in ("encoder_output", "quantized", "latent_from_indices", "decoded"):
        assert _maxdiff(out[key], case[key]) <= TOL, key
    with torch.no_grad():  # the golden ids decode to the golden pixels on a non-square grid
        grid = case["quantized"].shape[-2:]
        assert _maxdiff(model.decode_indices(case["indices"], (grid[0], grid[1])), case["decoded"]) <= TOL
    assert model.downsample_factor == case["pixel_values"].shape[-1] // grid[1]
    golden = load_file(GOLDEN / meta["weights"])
    assert {k: v.shape for k, v in golden.items()} == {k: v.shape for k, v in model.state_dict().items()}
