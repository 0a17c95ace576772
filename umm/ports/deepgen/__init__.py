"""DeepGen 1.0 glue: Qwen2.5-VL layer stacking, a SigLIP-encoder connector and the SD3 MMDiT with references."""

from umm.ports.deepgen.conditioning import Conditioning, PromptTemplate, encode, tokenize, vit_pixels
from umm.ports.deepgen.connector import DeepGenConnector, load_connector, save_connector
from umm.ports.deepgen.sampler import Guidance, sample, schedule
from umm.ports.deepgen.transformer import predict

__all__ = [
    "Conditioning",
    "DeepGenConnector",
    "Guidance",
    "PromptTemplate",
    "encode",
    "load_connector",
    "predict",
    "sample",
    "save_connector",
    "schedule",
    "tokenize",
    "vit_pixels",
]
