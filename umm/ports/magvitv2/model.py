"""MagViTv2 image tokenizer (Show-o / MMaDA): convolutional VQGAN-style encoder/decoder around an LFQ.

Layout, as in the official ``showlab/magvitv2`` checkpoint:

* ``encoder``: 3x3 ``conv_in``; one level per ``ch_mult`` entry, each with ``num_res_blocks[i]``
  residual blocks (``down.{i}.block.{j}``; optional self-attention ``down.{i}.attn.{j}`` at the
  resolutions listed in ``attn_resolutions``) and a stride-2 ``downsample`` on every level but the
  last; a middle ``block_1 / attn_1 / block_2``; GroupNorm + SiLU + 3x3 ``conv_out`` to ``z_channels``;
  and a 1x1 ``quant_conv``, which lives inside the encoder (not next to the quantizer).
* ``quantize``: the lookup-free quantizer (:mod:`.quantizer`).
* ``decoder``: 1x1 ``post_quant_conv`` (inside the decoder), 3x3 ``conv_in``, the same middle, levels
  walked from coarse to fine (``up.{i}``, ``upsample`` on every level but 0) and the same output head.

Encoder and decoder have their own ``ch_mult`` / ``num_res_blocks``; the real checkpoint uses
``attn_resolutions=(5,)``, a resolution no level ever has, so only the two middle attentions exist.
With 5 levels the token grid is the image size / 16 (256 px -> 16x16 = 256 tokens).

Upstream builds the model from hard-coded defaults and stores no architecture keys in its
``config.json``; the defaults below are those values, so a config with no keys gives the real model.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import load_file
from torch import nn

from umm.ports.magvitv2.quantizer import LookupFreeQuantizer

# Weight file names tried, in order, when ``from_single_file`` is given a folder: upstream's own
# ModelMixin copy names its files ``pytorch_model.*``, diffusers' ``diffusion_pytorch_model.*``.
# Safetensors only: umm never unpickles weights (a pickle-only release needs a reviewed exception).
WEIGHT_NAMES = (
    "pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
)


def group_norm(channels: int) -> nn.GroupNorm:
    """The normalisation used everywhere in the tokenizer: 32 groups, eps 1e-6, affine."""
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation residual block (norm, SiLU, 3x3 conv, twice), 1x1 ``nin_shortcut`` on width change.

    Written here rather than taken from diffusers because the checkpoint names the shortcut
    ``nin_shortcut`` (diffusers: ``conv_shortcut``).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, projections as 1x1 convs, added residually."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        # (B, C, H, W) -> (B, 1, H*W, C): one head whose width is the channel count
        q, k, v = (proj(normed).flatten(2).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0]
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 ``conv`` after zero-padding one row/column at the bottom/right.

    The asymmetric padding makes output pixel ``i`` see input pixels ``2i .. 2i+2``, as in training.
    (diffusers' ``Downsample2D(padding=0)`` computes the same but also registers the conv as
    ``Conv2d_0``, which a strict load of this checkpoint rejects.)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour repetition, then a 3x3 ``conv``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """``block_1 -> attn_1 -> block_2`` at the coarsest resolution (names match the checkpoint)."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution: ``block.{j}`` residual blocks, each followed by ``attn.{j}`` when attention is on.

    The encoder / decoder attach the resampler as ``downsample`` / ``upsample`` (the checkpoint's names)
    and apply it after this module.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, use_attn: bool, dropout: float) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.block = nn.ModuleList(ResnetBlock(widths[j], out_channels, dropout) for j in range(num_blocks))
        self.attn = nn.ModuleList(AttnBlock(out_channels) for _ in range(num_blocks) if use_attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[j](x)
        return x


def _check_levels(ch_mult: Sequence[int], num_res_blocks: Sequence[int], which: str) -> None:
    if len(ch_mult) != len(num_res_blocks):
        raise ValueError(f"{which}: ch_mult {list(ch_mult)} and num_res_blocks {list(num_res_blocks)} differ in length")


class Encoder(nn.Module):
    """Pixels ``(B, in_ch, H, W)`` -> continuous latent ``(B, z_channels, H / 2**(L-1), W / 2**(L-1))``."""

    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: Sequence[int],
        attn_resolutions: Sequence[int],
        dropout: float,
        in_ch: int,
        resolution: int,
        z_channels: int,
    ) -> None:
        super().__init__()
        _check_levels(ch_mult, num_res_blocks, "encoder")
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down = nn.ModuleList()
        width, res = ch, resolution
        for i, (mult, n) in enumerate(zip(ch_mult, num_res_blocks, strict=True)):
            level = Level(width, ch * mult, n, res in attn_resolutions, dropout)
            width = ch * mult
            if i < len(ch_mult) - 1:
                level.downsample = Downsample(width)
                res //= 2
            self.down.append(level)
        self.mid = MidBlock(width, dropout)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for i, level in enumerate(self.down):
            x = level(x)
            if i < len(self.down) - 1:
                x = level.downsample(x)
        x = self.conv_out(F.silu(self.norm_out(self.mid(x))))
        return self.quant_conv(x)


class Decoder(nn.Module):
    """Latent ``(B, z_channels, h, w)`` -> pixels ``(B, out_ch, h * 2**(L-1), w * 2**(L-1))``, unclamped."""

    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: Sequence[int],
        attn_resolutions: Sequence[int],
        dropout: float,
        out_ch: int,
        resolution: int,
        z_channels: int,
    ) -> None:
        super().__init__()
        _check_levels(ch_mult, num_res_blocks, "decoder")
        n_levels = len(ch_mult)
        width = ch * ch_mult[-1]
        res = resolution // 2 ** (n_levels - 1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 1)
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = MidBlock(width, dropout)
        levels: list[Level] = []
        for i in reversed(range(n_levels)):  # built coarse -> fine, stored so that up[i] is level i
            level = Level(width, ch * ch_mult[i], num_res_blocks[i], res in attn_resolutions, dropout)
            width = ch * ch_mult[i]
            if i > 0:
                level.upsample = Upsample(width)
                res *= 2
            levels.append(level)
        self.up = nn.ModuleList(reversed(levels))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(self.post_quant_conv(z)))
        for i in reversed(range(len(self.up))):
            x = self.up[i](x)
            if i > 0:
                x = self.up[i].upsample(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class MagViTv2(ModelMixin, ConfigMixin):
    """MagViTv2 LFQ tokenizer: images in [-1, 1] <-> ``2**z_channels``-way token ids on an (H/16, W/16) grid.

    Parameter and buffer names are the official ones (``encoder.*``, ``decoder.*``, ``quantize.embedding``,
    ``quantize.power_vals``), so the official state dict loads with ``strict=True``.
    """

    @register_to_config
    def __init__(
        self,
        ch: int = 128,
        encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4),
        encoder_num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4),
        decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3),
        attn_resolutions: tuple[int, ...] = (5,),
        dropout: float = 0.0,
        in_ch: int = 3,
        out_ch: int = 3,
        resolution: int = 256,
        z_channels: int = 13,
    ) -> None:
        super().__init__()
        shared = {"attn_resolutions": tuple(attn_resolutions), "dropout": dropout, "resolution": resolution}
        self.encoder = Encoder(
            ch, encoder_ch_mult, encoder_num_res_blocks, in_ch=in_ch, z_channels=z_channels, **shared
        )
        self.decoder = Decoder(
            ch, decoder_ch_mult, decoder_num_res_blocks, out_ch=out_ch, z_channels=z_channels, **shared
        )
        # LFQ has one bit per latent channel, so the codebook dimension is the latent width
        self.quantize = LookupFreeQuantizer(z_channels)

    @property
    def codebook_size(self) -> int:
        return self.quantize.codebook_size

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.encoder_ch_mult) - 1)

    def encode_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output (after ``quant_conv``), before quantisation: ``(B, z, h, w)``."""
        return self.encoder(pixel_values)

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels in [-1, 1] -> (±1 quantised latent ``(B, z, h, w)``, token ids ``(B, h*w)`` row-major)."""
        return self.quantize(self.encode_features(pixel_values))

    def indices_to_latent(self, indices: torch.Tensor, grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Token ids ``(B, h*w)`` -> ±1 latent ``(B, z, h, w)`` in the model's dtype; square grid if omitted."""
        return self.quantize.indices_to_latent(indices, grid_hw).to(self.dtype)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``(B, z, h, w)`` -> pixels ``(B, out_ch, f*h, f*w)`` (f = ``downsample_factor``), not clamped."""
        return self.decoder(latent)

    def decode_indices(self, indices: torch.Tensor, grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Token ids ``(B, h*w)`` -> pixels, i.e. :meth:`indices_to_latent` then :meth:`decode`."""
        return self.decode(self.indices_to_latent(indices, grid_hw))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the tokens (encode, quantise, decode)."""
        return self.decode(self.encode(pixel_values)[0])

    @classmethod
    def from_single_file(cls, path: str | Path, **config: Any) -> MagViTv2:
        """Build from config and load an official-layout state dict with ``strict=True``.

        ``path`` is a ``.safetensors`` file, or a folder holding one of ``WEIGHT_NAMES`` and
        optionally a ``config.json`` (e.g. a download of ``showlab/magvitv2``). Keys of that config that
        are not constructor arguments are ignored (upstream's ``MAGVITv2.__init__`` registers none, so its
        config can hold only metadata such as ``_class_name``); ``config`` overrides it, and anything
        unset keeps the real model's defaults.
        """
        path = Path(path)
        if path.is_dir():
            file_config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
            known = inspect.signature(cls.__init__).parameters
            config = {**{k: v for k, v in file_config.items() if k in known and k != "self"}, **config}
            found = [path / name for name in WEIGHT_NAMES if (path / name).is_file()]
            if not found:
                raise FileNotFoundError(
                    f"no safetensors weights in {path}; looked for {', '.join(WEIGHT_NAMES)} "
                    "(pickled .bin weights are not loaded)"
                )
            path = found[0]
        if path.suffix != ".safetensors":
            raise ValueError(f"{path.name}: umm loads safetensors only, not pickled weights")
        state_dict = load_file(path)
        model = cls(**config)
        model.load_state_dict(state_dict, strict=True)
        return model.eval()


def load_for(adapter: Any, codebook_size: int, device: torch.device, component: str = "magvitv2") -> MagViTv2:
    """The image tokenizer a Show-o-family model reads from its ``magvitv2`` component, checked against it.

    Kept in fp32 on ``device``: it is small and decodes visibly better than in bf16.
    """
    from umm.errors import ModelLoadError

    vq = MagViTv2.from_single_file(adapter.snapshot_dir(component, ["config.json", "*.safetensors"])).to(device)
    if vq.codebook_size != codebook_size:
        raise ModelLoadError(
            f"{adapter.spec.name}: the image tokenizer has {vq.codebook_size} codes, the model {codebook_size}."
        )
    return vq
