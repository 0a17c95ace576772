"""Clean PyTorch port of the MagViTv2 lookup-free-quantizer image tokenizer used by Show-o and MMaDA."""

from umm.ports.magvitv2.model import MagViTv2
from umm.ports.magvitv2.quantizer import LookupFreeQuantizer, corner_table

__all__ = ["LookupFreeQuantizer", "MagViTv2", "corner_table"]
