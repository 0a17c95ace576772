"""BLIP3o-NEXT glue: a Qwen3 LM that samples image tokens, a connector, and diffusers' SANA + DC-AE.

Every model piece is a native transformers / diffusers class; this package holds only what joins
them: the official checkpoint's loading (one sharded file set for LM, connector, SANA and DC-AE),
the prompt, the AR sampling loop, the conditioning span and the guided flow-matching loop.
"""

from umm.ports.blip3o.checkpoint import (
    IGNORED_KEYS,
    Blip3oLanguageModel,
    build_connector,
    language_config,
    load_diffusion_head,
    read_prefixed,
)
from umm.ports.blip3o.sampling import (
    conditioning,
    decode,
    denoise,
    flow_sigmas,
    prompt_text,
    sample_image_tokens,
    warpers,
)

__all__ = [
    "IGNORED_KEYS",
    "Blip3oLanguageModel",
    "build_connector",
    "conditioning",
    "decode",
    "denoise",
    "flow_sigmas",
    "language_config",
    "load_diffusion_head",
    "prompt_text",
    "read_prefixed",
    "sample_image_tokens",
    "warpers",
]
