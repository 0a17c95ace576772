"""Clean PyTorch port of the OmniGen2 diffusion transformer and its guided Euler sampler."""

from umm.ports.omnigen2.sampler import Conditioning, guided_velocity, sample, time_grid
from umm.ports.omnigen2.transformer import (
    OmniGen2Transformer2DModel,
    tiny_transformer_config,
)

__all__ = [
    "Conditioning",
    "OmniGen2Transformer2DModel",
    "guided_velocity",
    "sample",
    "time_grid",
    "tiny_transformer_config",
]
