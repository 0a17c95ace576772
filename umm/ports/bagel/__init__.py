"""Clean PyTorch port of Bagel (BAGEL-7B-MoT): MoT Qwen2 + SigLIP-NaViT, the FLUX AE, contexts and sampler."""

from umm.ports.bagel.autoencoder import load_autoencoder
from umm.ports.bagel.inference import (
    GEN_THINK_SYSTEM_PROMPT,
    VLM_THINK_SYSTEM_PROMPT,
    Branches,
    Guidance,
    ImageTransform,
    Session,
    SpecialIds,
    Trace,
    empty_branches,
    sample_latents,
    to_uint8,
    unpatchify,
    with_image,
    with_text,
)
from umm.ports.bagel.model import Bagel, BagelConfig, Context

__all__ = [
    "GEN_THINK_SYSTEM_PROMPT",
    "VLM_THINK_SYSTEM_PROMPT",
    "Bagel",
    "BagelConfig",
    "Branches",
    "Context",
    "Guidance",
    "ImageTransform",
    "Session",
    "SpecialIds",
    "Trace",
    "empty_branches",
    "load_autoencoder",
    "sample_latents",
    "to_uint8",
    "unpatchify",
    "with_image",
    "with_text",
]
