"""Building the port from the official files: the LLM repo's config + safetensors, the tokenizer's
safetensors copy (``umm convert`` of ``tokenflow_clipb_32k_enhanced.pt``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from umm.ports.tokenflow.llm import TokenFlowForCausalLM, text_config
from umm.ports.tokenflow.vq import NEEDED, TokenFlowPixelDecoder, official_to_port, sizes_from_state


def llm_weight_files(root: Path) -> list[Path]:
    """The shards named by ``model.safetensors.index.json``, else ``model.safetensors``."""
    index = root / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [root / name for name in names]
    single = root / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"no safetensors weights found in {root} (expected model.safetensors)")
    return [single]


def build_llm(config: dict, scales: tuple[int, ...], device: str | torch.device = "meta") -> TokenFlowForCausalLM:
    """The LLM with parameters on ``device`` (``meta``: no memory; buffers such as RoPE stay real)."""
    with torch.device(device):
        model = TokenFlowForCausalLM(text_config(config), scales)
    if str(device) == "meta":
        rotary = model.model.rotary_emb
        real = type(rotary)(model.config)
        rotary.inv_freq, rotary.original_inv_freq = real.inv_freq, real.original_inv_freq
    return model


def load_llm(
    root: Path, scales: tuple[int, ...], dtype: torch.dtype, device: torch.device | str
) -> TokenFlowForCausalLM:
    from safetensors.torch import load_file

    config = json.loads((Path(root) / "config.json").read_text(encoding="utf-8"))
    model = build_llm(config, scales)
    state = {}
    for path in llm_weight_files(Path(root)):
        state.update(load_file(path))
    check_scales(state, scales)
    state = {k: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.requires_grad_(False).to(device).eval()


def check_scales(state: dict[str, torch.Tensor], scales: tuple[int, ...]) -> None:
    """The scale schedule is not in any config file; it must fit ``lvl_embed`` and ``pos_1LC``."""
    levels, tokens = state["model.lvl_embed.weight"].shape[0], state["model.pos_1LC"].shape[0]
    if levels != len(scales) + 1 or tokens != sum(s * s for s in scales):
        raise ValueError(
            f"scale schedule {list(scales)} ({sum(s * s for s in scales)} tokens) does not fit the checkpoint "
            f"({levels - 1} scales, {tokens} image tokens)"
        )


def load_pixel_decoder(path: Path, dtype: torch.dtype, device: torch.device | str) -> TokenFlowPixelDecoder:
    """From the safetensors copy of the tokenizer pickle: only the keys text-to-image reads."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        state = {k: fh.get_tensor(k) for k in fh.keys() if NEEDED.match(k)}
    sizes = sizes_from_state(state)
    with torch.device("meta"):
        decoder = TokenFlowPixelDecoder(sizes)
    decoder.load_state_dict({k: v.to(dtype) for k, v in official_to_port(state).items()}, strict=True, assign=True)
    return decoder.requires_grad_(False).to(device).eval()
