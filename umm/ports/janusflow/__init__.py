"""JanusFlow port: ShallowUViT encoder/decoder, aligners and the rectified-flow sampler on native classes."""

from umm.ports.janusflow.model import (
    JanusFlowConfig,
    JanusFlowModel,
    load_model,
    original_to_port,
    port_to_original,
)
from umm.ports.janusflow.sampler import guidance_rows, sample
from umm.ports.janusflow.uvit import ShallowUViTDecoder, ShallowUViTEncoder

__all__ = [
    "JanusFlowConfig",
    "JanusFlowModel",
    "ShallowUViTDecoder",
    "ShallowUViTEncoder",
    "guidance_rows",
    "load_model",
    "original_to_port",
    "port_to_original",
    "sample",
]
