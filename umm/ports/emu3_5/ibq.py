"""Emu3.5's IBQ vision tokenizer (BAAI/Emu3.5-VisionTokenizer) in plain PyTorch.

The parameter names are those of the official ``model.ckpt`` (``encoder.*``, ``decoder.*``,
``quant_conv``, ``post_quant_conv``, ``quantize.embedding``), so the converted safetensors load
strictly. Every size comes from ``config.yaml`` (``IBQ(**cfg)`` upstream): ``ddconfig`` for the
encoder/decoder, ``n_embed`` codes of ``embed_dim`` channels.

Facts kept from upstream (see the golden README): the encoder downsamples once per level but the
last, attention sits where ``ddconfig.resolution / 2**level`` is listed in ``attn_resolutions``
(never the actual image size), and a code is the argmax of the plain dot product with the raw
codebook, not the nearest neighbour.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2 if padding is None else padding)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), _conv(cin, cout)
        self.norm2, self.conv2 = _norm(cout), _conv(cout, cout)
        if cin != cout:
            self.nin_shortcut = _conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with 1x1 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (_conv(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, c, h * w).transpose(1, 2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(
            channels, channels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block, self.attn = nn.ModuleList(), nn.ModuleList()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


class Encoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: list[int], num_res_blocks: int, attn_resolutions: list[int],
                 in_channels: int, resolution: int, z_channels: int, double_z: bool = True, **_: Any) -> None:
        super().__init__()
        self.conv_in = _conv(in_channels, ch)
        self.down = nn.ModuleList()
        res, cin = resolution, ch
        for i, mult in enumerate(ch_mult):
            level = _Level()
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(cin, ch * mult))
                cin = ch * mult
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(cin))
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(cin)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(cin)
        self.norm_out = _norm(cin)
        self.conv_out = _conv(cin, 2 * z_channels if double_z else z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, *, ch: int, out_ch: int, ch_mult: list[int], num_res_blocks: int,
                 attn_resolutions: list[int], resolution: int, z_channels: int, **_: Any) -> None:
        super().__init__()
        levels = len(ch_mult)
        cin = ch * ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        self.conv_in = _conv(z_channels, cin)
        self.mid = _Mid(cin)
        ups: list[_Level] = []
        for i in reversed(range(levels)):
            level = _Level()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(cin, ch * ch_mult[i]))
                cin = ch * ch_mult[i]
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(cin))
            if i != 0:
                level.upsample = Upsample(cin)
                res *= 2
            ups.insert(0, level)
        self.up = nn.ModuleList(ups)
        self.norm_out = _norm(cin)
        self.conv_out = _conv(cin, out_ch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level.run(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class IndexPropagationQuantize(nn.Module):
    """Eval-time IBQ quantizer: code = argmax over n of z . e_n (raw codebook, no normalisation)."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bdhw,nd->bnhw", z, self.embedding.weight)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """[B, h, w] code ids."""
        return self.logits(z).argmax(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of [B, h, w] codes as [B, embed_dim, h, w]."""
        return self.embedding(codes).permute(0, 3, 1, 2).contiguous()


class IBQ(nn.Module):
    """Encoder, quantizer and decoder of the IBQ tokenizer (16x down with five levels)."""

    def __init__(self, ddconfig: dict[str, Any], n_embed: int, embed_dim: int, **_: Any) -> None:
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = IndexPropagationQuantize(n_embed, embed_dim)
        self.quant_conv = _conv(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = _conv(embed_dim, ddconfig["z_channels"], 1)
        self.downsample = 2 ** (len(ddconfig["ch_mult"]) - 1)

    @property
    def n_embed(self) -> int:
        return self.quantize.embedding.num_embeddings

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, H/16, W/16] codes."""
        return self.quantize.codes(self.quant_conv(self.encoder(pixels)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, h, w] codes -> [B, 3, 16h, 16w], unclamped (about [-1, 1])."""
        return self.decoder(self.post_quant_conv(self.quantize.lookup(codes)))


def ibq_from_config(cfg: dict[str, Any]) -> IBQ:
    return IBQ(**cfg)


# -- images <-> pixels (upstream input_utils / generation_utils) -----------------------------
def smart_resize(image: Image.Image, area: int, factor: int = 16) -> Image.Image:
    """Keep the aspect ratio, aim at ``area`` pixels, round each side to a multiple of ``factor``."""
    width, height = image.size
    aspect = width / height
    new_h = int(math.sqrt(area / aspect))
    new_w = int(new_h * aspect)
    new_h, new_w = max(factor, ((new_h + factor // 2) // factor) * factor), max(
        factor, ((new_w + factor // 2) // factor) * factor
    )
    return image.resize((new_w, new_h), Image.BICUBIC)


def to_pixels(image: Image.Image) -> torch.Tensor:
    """uint8 RGB -> [1, 3, H, W] float32 in [-1, 1] (computed in float64 as upstream, then cast)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float64) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].float()


def to_image(pixels: torch.Tensor) -> Image.Image:
    """[3, H, W] (about [-1, 1]) -> PIL, truncating to uint8 as upstream's decode_image does."""
    array = ((pixels.float().permute(1, 2, 0) + 1.0) * 127.5).clamp(0, 255).cpu().numpy().astype(np.uint8)
    return Image.fromarray(array)


def load_ibq(config_yaml, weights, device="cpu", dtype=None) -> IBQ:
    """IBQ from the repo's ``config.yaml`` (``IBQ(**cfg)``) and a safetensors state dict, strictly."""
    import yaml
    from safetensors.torch import load_file

    with open(config_yaml, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    with torch.device("meta"):
        model = IBQ(**cfg)
    state = load_file(str(weights), device=str(device))
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
