"""Emu3.5 (BAAI): Qwen3 LLM over text + IBQ visual tokens, its IBQ tokenizer, tokenizer and sampler."""

from umm.ports.emu3_5.ibq import IBQ, smart_resize, to_image, to_pixels
from umm.ports.emu3_5.llm import load_llm, qwen3_config, read_config
from umm.ports.emu3_5.sampler import Settings, Trace, sample
from umm.ports.emu3_5.tokenizer import Emu35Tokenizer

__all__ = [
    "IBQ", "Emu35Tokenizer", "Settings", "Trace", "load_llm", "qwen3_config", "read_config", "sample",
    "smart_resize", "to_image", "to_pixels",
]
