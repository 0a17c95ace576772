"""BLIP3o-NEXT at full size, without weights: the port's modules have upstream's names and shapes.

``tests/data/blip3o_names_shapes.json`` was written by building upstream's ``blip3oQwenForInferenceLM``
(JiuhaiChen/BLIP3o@6ced364, with the transformers / diffusers versions its requirements pin) on the meta
device from ``tests/data/blip3o_full_configs.json``; TA-Tok was not built, as the port never loads it.
Here the port's own pieces are built the same way (the LM class, the connector from its weights'
widths, SANA and the DC-AE from the SANA repo's configs) and every key must match, prefixes included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"


def _port_names_shapes(configs: dict) -> dict[str, list[int]]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import Qwen3Config

    from umm.ports.blip3o import Blip3oLanguageModel, build_connector
    from umm.ports.blip3o.checkpoint import CONNECTOR_PREFIX, SANA_PREFIX, VAE_PREFIX

    out: dict[str, list[int]] = {}
    with torch.device("meta"):
        lm = Blip3oLanguageModel(Qwen3Config(**configs["lm"]))
        width, hidden = configs["sana"]["caption_channels"], configs["lm"]["hidden_size"]
        connector = build_connector({
            "0.weight": torch.empty(width, hidden), "0.bias": torch.empty(width),
            "2.weight": torch.empty(width, width), "2.bias": torch.empty(width), "3.weight": torch.empty(width),
        })
    with init_empty_weights():
        sana = SanaTransformer2DModel.from_config(configs["sana"])
        vae = AutoencoderDC.from_config(configs["vae"])
    for prefix, module in (("", lm), (CONNECTOR_PREFIX, connector), (SANA_PREFIX, sana), (VAE_PREFIX, vae)):
        out.update({prefix + k: list(v.shape) for k, v in module.state_dict().items()})
    return out


def test_full_size_names_and_shapes_match_upstream():
    configs = json.loads((DATA / "blip3o_full_configs.json").read_text())
    expected = json.loads((DATA / "blip3o_names_shapes.json").read_text())["names_shapes"]
    ours = _port_names_shapes(configs)
    assert sorted(set(expected) - set(ours)) == [] and sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    assert ours["model.embed_tokens.weight"] == [217210, 2048]
    assert ours["model.diffusion_connector.0.weight"] == [2304, 2048]


def test_ignore_pattern_separates_lm_keys_from_the_rest():
    """The LM loads exactly the Qwen3 keys; everything else (and TA-Tok's) is left to the head loader."""
    from umm.ports.blip3o import IGNORED_KEYS

    expected = json.loads((DATA / "blip3o_names_shapes.json").read_text())["names_shapes"]
    skipped = {k for k in expected if re.search(IGNORED_KEYS, k)}
    head = ("model.sana.", "model.sana_vae.", "model.diffusion_connector.")
    assert skipped and all(k.startswith(head) for k in skipped)
    assert len(expected) - len(skipped) == 3 + 28 * 11  # embed, norm, lm_head + 11 tensors per Qwen3 layer
    assert re.search(IGNORED_KEYS, "model.vision_tower.vision_tower.encoder.blocks.0.attn.qkv.weight")
    assert not re.search(IGNORED_KEYS, "model.layers.0.self_attn.q_proj.weight")


def test_parameter_count_behind_the_catalog_memory_figure(real_catalog):
    expected = json.loads((DATA / "blip3o_names_shapes.json").read_text())["names_shapes"]
    params = sum(torch.Size(shape).numel() for name, shape in expected.items() if name != "lm_head.weight")  # tied
    assert 3.7e9 < params < 3.85e9
    assert abs(real_catalog.get("blip3o-next-sft-3b").weight_bytes - 2 * params) / (2 * params) < 0.01
