"""Port of Show-o2 (showlab): dual-path image embedding, Qwen2.5 LLM, flow head, sampler."""

from umm.ports.showo2.model import HeadConfig, Showo2Model, additive, omni_mask
from umm.ports.showo2.pipeline import (
    TokenIds,
    decode,
    generation_batch,
    generation_sequence,
    load_model,
    sample,
    showo_tokenizer,
    time_grid,
    understanding_embeds,
    understanding_sequence,
)

__all__ = [
    "HeadConfig",
    "Showo2Model",
    "TokenIds",
    "additive",
    "decode",
    "generation_batch",
    "generation_sequence",
    "load_model",
    "omni_mask",
    "sample",
    "showo_tokenizer",
    "time_grid",
    "understanding_embeds",
    "understanding_sequence",
]
