"""Loading the official BLIP3o-NEXT checkpoint, unchanged, with native classes.

The hub repo is one sharded set of safetensors written by upstream's ``save_pretrained``:

* ``model.embed_tokens`` / ``model.layers.N`` / ``model.norm`` — a plain Qwen3 causal LM (tied head);
* ``model.diffusion_connector.{0,2,3}`` — Linear, GELU(tanh), Linear, RMSNorm;
* ``model.sana.*`` — diffusers ``SanaTransformer2DModel``; ``model.sana_vae.*`` — ``AutoencoderDC``;
* ``model.vision_tower.*`` — TA-Tok, the image *input* tokenizer, which text-to-image never runs.

The LM loads through ``from_pretrained``; the class lists every non-LM prefix in
``_keys_to_ignore_on_load_unexpected``, so transformers drops those keys without an "unexpected keys"
report. The connector and the diffusion modules are then read from the same shards by prefix
(:func:`read_prefixed`), into modules built from the SANA repo's configs — upstream builds SANA and the
DC-AE from that repo too, then overwrites their weights with the checkpoint's. Nothing here downloads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import Qwen3Config, Qwen3ForCausalLM

CONNECTOR_PREFIX = "model.diffusion_connector."
SANA_PREFIX = "model.sana."
VAE_PREFIX = "model.sana_vae."
# Keys the LM does not own: read separately (connector, SANA, DC-AE) or never (TA-Tok).
IGNORED_KEYS = r"^model\.(diffusion_connector|sana|sana_vae|vision_tower)\."
CONNECTOR_EPS = 1e-5  # upstream: RMSNorm(2304, eps=1e-5, elementwise_affine=True)


class Blip3oLanguageModel(Qwen3ForCausalLM):
    """Qwen3ForCausalLM that silently skips the checkpoint's non-LM keys (see module docstring)."""

    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = [IGNORED_KEYS]


def language_config(repo: str, **source: Any) -> Qwen3Config:
    """The Qwen3 config of the checkpoint's ``config.json`` (model type ``blip3o_qwen*``), BLIP3o ids kept."""
    from transformers.utils import cached_file

    config_dict = json.loads(Path(cached_file(repo, "config.json", **source)).read_text())
    dropped = ("model_type", "architectures", "auto_map", "transformers_version")
    config_dict = {k: v for k, v in config_dict.items() if k not in dropped}
    if config_dict.get("rope_scaling") is None:  # upstream forces None; v5 reads rope_theta alone
        config_dict.pop("rope_scaling", None)
    return Qwen3Config.from_dict(config_dict)


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    return sorted(folder.glob("*.safetensors"))


def read_prefixed(folder: Path, prefix: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint under ``prefix``, with the prefix removed (empty if none)."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for path in weight_files(Path(folder)):
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            for key in handle.keys():
                if key.startswith(prefix):
                    out[key[len(prefix):]] = handle.get_tensor(key)
    return out


def build_connector(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """Upstream's ``diffusion_connector``, its widths (hidden -> C -> C) taken from the weights."""
    from diffusers.models.normalization import RMSNorm

    width, hidden = state["0.weight"].shape
    connector = nn.Sequential(
        nn.Linear(hidden, width),
        nn.GELU(approximate="tanh"),
        nn.Linear(width, width),
        RMSNorm(width, eps=CONNECTOR_EPS, elementwise_affine=True),
    )
    connector.load_state_dict(state, strict=True)
    return connector.eval()


def module_from_state(
    cls: Any, config: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype
) -> nn.Module:
    """A diffusers model built from ``config`` without random init, then given ``state`` (strict).

    The tensors are cast before they are assigned, so the module never needs a dtype-changing ``.to``.
    """
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        module = cls.from_config(config)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval()


def load_diffusion_head(
    folder: Path,
    sana_config: dict[str, Any],
    vae_config: dict[str, Any],
    *,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
) -> tuple[nn.Sequential, nn.Module | None, nn.Module | None]:
    """Connector, SANA and DC-AE from the checkpoint; None for a module the checkpoint does not hold."""
    from diffusers import AutoencoderDC, SanaTransformer2DModel

    connector = build_connector(read_prefixed(folder, CONNECTOR_PREFIX, device)).to(dtype)
    sana_state = read_prefixed(folder, SANA_PREFIX, device)
    vae_state = read_prefixed(folder, VAE_PREFIX, device)
    sana = module_from_state(SanaTransformer2DModel, sana_config, sana_state, dtype) if sana_state else None
    vae = module_from_state(AutoencoderDC, vae_config, vae_state, dtype) if vae_state else None
    return connector, sana, vae
