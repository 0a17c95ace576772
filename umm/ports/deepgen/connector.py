"""DeepGen's "stacked channel bridging": VLM hidden states -> DiT text conditioning.

The connector is transformers' ``SiglipEncoder`` unchanged (bidirectional, biased attention with no
mask and no positions, pre-LayerNorm blocks, no final norm); around it sit three linear projectors
and the learned meta-queries that are appended to every prompt. Sizes come from the tensor shapes
in ``connector/model.safetensors`` and the head count, activation and norm epsilon from
``connector/config.json`` (its ``connector`` object), so any checkpoint in the official layout
loads as is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class DeepGenConnector(nn.Module):
    """``projector_1`` -> SigLIP encoder -> (pooled, sequence) for the DiT, plus ``meta_queries``."""

    def __init__(
        self,
        *,
        llm_hidden_size: int,
        num_selected_layers: int,
        hidden_size: int,
        intermediate_size: int,
        num_hidden_layers: int,
        num_attention_heads: int,
        pooled_projection_dim: int,
        joint_attention_dim: int,
        num_queries: int,
        hidden_act: str = "gelu_pytorch_tanh",
        layer_norm_eps: float = 1e-6,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from transformers import SiglipVisionConfig
        from transformers.models.siglip.modeling_siglip import SiglipEncoder

        config = SiglipVisionConfig(
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
            attention_dropout=attention_dropout,
        )
        config._attn_implementation = "sdpa"
        self.num_selected_layers = num_selected_layers
        self.connector = SiglipEncoder(config)
        self.projector_1 = nn.Linear(llm_hidden_size * num_selected_layers, hidden_size)
        self.projector_2 = nn.Linear(hidden_size, pooled_projection_dim)
        self.projector_3 = nn.Linear(hidden_size, joint_attention_dim)
        self.meta_queries = nn.Parameter(torch.zeros(num_queries, llm_hidden_size))

    @property
    def num_queries(self) -> int:
        return self.meta_queries.shape[0]

    def encode(self, stacked: torch.Tensor) -> torch.Tensor:
        """The connector's output (B, T, C) over every position: pads, prompt and queries alike."""
        return self.connector(inputs_embeds=self.projector_1(stacked)).last_hidden_state

    def forward(self, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled (B, P), prompt_embeds (B, T, J)): the mean over all T positions, and the full sequence."""
        x = self.encode(stacked)
        return self.projector_2(x.mean(1)), self.projector_3(x)


def connector_kwargs(config: dict, shapes: dict[str, tuple[int, ...]]) -> dict:
    """Constructor arguments from ``connector/config.json`` and the checkpoint's tensor shapes."""
    block = config.get("connector", config)
    llm_hidden = shapes["meta_queries"][1]
    stacked = shapes["projector_1.weight"][1]
    if stacked % llm_hidden:
        raise ValueError(f"projector_1 takes {stacked} features, not a multiple of the VLM width {llm_hidden}")
    layers = {key.split(".")[2] for key in shapes if key.startswith("connector.layers.")}
    return {
        "llm_hidden_size": llm_hidden,
        "num_selected_layers": stacked // llm_hidden,
        "hidden_size": shapes["projector_1.weight"][0],
        "intermediate_size": shapes["connector.layers.0.mlp.fc1.weight"][0],
        "num_hidden_layers": len(layers),
        "num_attention_heads": int(block["num_attention_heads"]),
        "pooled_projection_dim": shapes["projector_2.weight"][0],
        "joint_attention_dim": shapes["projector_3.weight"][0],
        "num_queries": shapes["meta_queries"][0],
        "hidden_act": block.get("hidden_act", "gelu_pytorch_tanh"),
        "layer_norm_eps": float(block.get("layer_norm_eps", 1e-6)),
        "attention_dropout": float(block.get("attention_dropout", 0.0)),
    }


def load_connector(config_path: Path, weights_path: Path, dtype: torch.dtype) -> DeepGenConnector:
    """Build on the meta device and assign the checkpoint's tensors (strict: every key, nothing extra)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    with safe_open(str(weights_path), framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    with torch.device("meta"):
        module = DeepGenConnector(**connector_kwargs(config, shapes))
    state = {key: tensor.to(dtype) for key, tensor in load_file(str(weights_path)).items()}
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval()


def save_connector(module: DeepGenConnector, directory: Path, extra_config: dict | None = None) -> None:
    """Write ``connector/`` in the official layout (used by tiny twins)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = module.connector.config
    block = {
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "hidden_act": config.hidden_act,
        "layer_norm_eps": config.layer_norm_eps,
        "attention_dropout": config.attention_dropout,
    }
    payload = {"connector": block, "num_queries": module.num_queries, **(extra_config or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(directory / WEIGHTS_FILE))
