"""TokenFlow text-to-image (ByteFlow-AI/TokenFlow ``t2i``): LLM, next-scale sampler and pixel decoder."""

from umm.ports.tokenflow.llm import ScaleKVCache, TokenFlowForCausalLM, text_config
from umm.ports.tokenflow.loading import build_llm, load_llm, load_pixel_decoder
from umm.ports.tokenflow.sampler import LOOP_STRATEGIES, TokenLayout, generate_codes, prefix_ids
from umm.ports.tokenflow.vq import TokenFlowPixelDecoder, to_uint8

__all__ = [
    "LOOP_STRATEGIES", "ScaleKVCache", "TokenFlowForCausalLM", "TokenFlowPixelDecoder", "TokenLayout",
    "build_llm", "generate_codes", "load_llm", "load_pixel_decoder", "prefix_ids", "text_config", "to_uint8",
]
