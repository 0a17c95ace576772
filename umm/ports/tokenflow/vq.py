"""The part of the TokenFlow tokenizer that text-to-image reads: dual codebook + pixel decoder.

Upstream ``tokenflow/tokenizer/vq_model.py``: code c stands for ``cat(normalize(E_sem[c]),
normalize(E_pix[c]))``. The LLM sees the re-upsampled running sum of the earlier scales' maps (bicubic);
the pixel decoder sees the direct sum of every scale's map upsampled to the last scale, of which only the
pixel half goes through ``post_quant_conv`` and the LlamaGen-style decoder. That decoder is transformers'
``JanusVQVAEDecoder`` with renamed keys (``conv_blocks.i.res.j`` -> ``up.i.block.j`` …), so the official
names are renamed at load time and every size is read from the weights' shapes.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

# Keys of the official state dict that text-to-image needs (the rest encodes images or rebuilds CLIP features).
NEEDED = re.compile(r"^(quantize\.embedding_vq(kd|gan)\.weight|post_quant_conv\.|decoder\.)")
_RENAMES = (
    (re.compile(r"^decoder\.conv_blocks\.(\d+)\.res\.(\d+)\."), r"decoder.up.\1.block.\2."),
    (re.compile(r"^decoder\.conv_blocks\.(\d+)\.attn\.(\d+)\."), r"decoder.up.\1.attn.\2."),
    (re.compile(r"^decoder\.conv_blocks\.(\d+)\.upsample\."), r"decoder.up.\1.upsample."),
    (re.compile(r"^decoder\.mid\.0\."), "decoder.mid.block_1."),
    (re.compile(r"^decoder\.mid\.1\."), "decoder.mid.attn_1."),
    (re.compile(r"^decoder\.mid\.2\."), "decoder.mid.block_2."),
)


def official_to_port(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the keys text-to-image reads and rename the decoder's to ``JanusVQVAEDecoder``'s."""
    out = {}
    for key, tensor in state.items():
        if not NEEDED.match(key):
            continue
        for pattern, repl in _RENAMES:
            key = pattern.sub(repl, key)
        out[key] = tensor
    return out


def port_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse rename, for writing checkpoints in the official layout (tiny twins)."""
    back = (
        (r"^decoder\.up\.(\d+)\.block\.(\d+)\.", r"decoder.conv_blocks.\1.res.\2."),
        (r"^decoder\.up\.(\d+)\.attn\.(\d+)\.", r"decoder.conv_blocks.\1.attn.\2."),
        (r"^decoder\.up\.(\d+)\.upsample\.", r"decoder.conv_blocks.\1.upsample."),
        (r"^decoder\.mid\.block_1\.", "decoder.mid.0."),
        (r"^decoder\.mid\.attn_1\.", "decoder.mid.1."),
        (r"^decoder\.mid\.block_2\.", "decoder.mid.2."),
    )
    out = {}
    for key, tensor in state.items():
        for pattern, repl in back:
            key = re.sub(pattern, repl, key)
        out[key] = tensor
    return out


def sizes_from_state(state: dict[str, torch.Tensor]) -> dict:
    """Codebook and decoder sizes from the official state dict's shapes (the .pt has no config)."""
    try:
        size, semantic = state["quantize.embedding_vqkd.weight"].shape
        pixel = state["quantize.embedding_vqgan.weight"].shape[1]
        latent = state["post_quant_conv.weight"].shape[0]
        levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"decoder\.conv_blocks\.(\d+)\.", k))})
        channels = [state[f"decoder.conv_blocks.{i}.res.0.conv1.weight"].shape[0] for i in levels]
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.conv_blocks\.0\.res\.(\d+)\.", k))}
        out_channels = state["decoder.conv_out.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"not a TokenFlow tokenizer state dict: {err.args[0]} is missing") from None
    base = math.gcd(*channels)
    return {
        "codebook_size": int(size), "semantic_dim": int(semantic), "pixel_dim": int(pixel),
        "latent_channels": int(latent), "base_channels": int(base),
        "channel_multiplier": [c // base for c in reversed(channels)],  # conv_blocks.0 is the lowest resolution
        "num_res_blocks": len(blocks) - 1, "out_channels": int(out_channels),
    }


class Codebooks(nn.Module):
    """``quantize.*``: the semantic and the pixel codebook sharing one index."""

    def __init__(self, size: int, semantic_dim: int, pixel_dim: int) -> None:
        super().__init__()
        self.embedding_vqkd = nn.Embedding(size, semantic_dim)
        self.embedding_vqgan = nn.Embedding(size, pixel_dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """(…,) codes -> (…, C) vectors: each half L2-normalised separately, as upstream's ``l2_norm``."""
        table = torch.cat(
            [F.normalize(self.embedding_vqkd.weight, dim=-1), F.normalize(self.embedding_vqgan.weight, dim=-1)], -1
        )
        return table[codes]


class TokenFlowPixelDecoder(nn.Module):
    def __init__(self, sizes: dict) -> None:
        from transformers import JanusVQVAEConfig
        from transformers.models.janus.modeling_janus import JanusVQVAEDecoder

        super().__init__()
        self.sizes = dict(sizes)
        self.quantize = Codebooks(sizes["codebook_size"], sizes["semantic_dim"], sizes["pixel_dim"])
        self.post_quant_conv = nn.Conv2d(sizes["pixel_dim"], sizes["latent_channels"], 1)
        self.decoder = JanusVQVAEDecoder(JanusVQVAEConfig(
            base_channels=sizes["base_channels"], channel_multiplier=list(sizes["channel_multiplier"]),
            num_res_blocks=sizes["num_res_blocks"], latent_channels=sizes["latent_channels"],
            out_channels=sizes["out_channels"], dropout=0.0,
        ))

    @property
    def code_dim(self) -> int:
        return self.sizes["semantic_dim"] + self.sizes["pixel_dim"]

    def scale_maps(self, codes: torch.Tensor, scales: tuple[int, ...]) -> list[torch.Tensor]:
        """Codes (B, Σs²) -> one (B, C, s, s) map per scale (row-major inside a scale)."""
        vectors = self.quantize(codes)
        maps, start = [], 0
        for s in scales:
            maps.append(vectors[:, start:start + s * s].reshape(codes.shape[0], s, s, -1).permute(0, 3, 1, 2))
            start += s * s
        return maps

    def latent(self, codes: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
        """Direct sum of every scale's map, bicubically upsampled to the last scale (the decoder input)."""
        last = scales[-1]
        total = 0.0
        for e in self.scale_maps(codes, scales):
            total = total + F.interpolate(e, size=(last, last), mode="bicubic", align_corners=False)
        return total

    def decode(self, codes: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
        """Codes -> images in [-1, 1] (B, 3, H, W); the semantic half is not needed for pixels."""
        latent = self.latent(codes, scales).to(self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(latent[:, self.sizes["semantic_dim"]:]))


def next_input(previous: torch.Tensor | None, e_previous: torch.Tensor, size: int) -> torch.Tensor:
    """LLM input map of the next scale: ``up(x_{k-1} + e_{k-1})`` (x_0 = 0), bicubic to ``size``."""
    total = e_previous if previous is None else previous + e_previous
    return F.interpolate(total, size=(size, size), mode="bicubic", align_corners=False)


def llm_image_features(decoder: TokenFlowPixelDecoder, codes: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """Every LLM image input x_1 … x_{n-1} at once, flattened (B, Σ_{k≥1} s_k², C): teacher forcing."""
    maps = decoder.scale_maps(codes, scales)
    out, x = [], None
    for k in range(1, len(scales)):
        x = next_input(x, maps[k - 1], scales[k])
        out.append(x.flatten(2).transpose(1, 2))
    return torch.cat(out, dim=1)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, upstream's ``clamp(x·127.5 + 128)`` (truncating)."""
    return torch.clamp(images.permute(0, 2, 3, 1).float() * 127.5 + 128.0, 0, 255).to(torch.uint8)
