"""JanusFlow's ShallowUViT: the small ConvNeXt encoder / decoder around the LLM for rectified flow.

Parameter names follow the official checkpoint (``vision_gen_enc_model.*`` / ``vision_gen_dec_model.*``
of ``deepseek-ai/JanusFlow-1.3B``) so its weights load unchanged. The time embedding is diffusers'
``Timesteps`` + ``TimestepEmbedding`` and every norm is transformers' ``LlamaRMSNorm`` (fp32 inside),
applied over channels on NHWC tensors. Only the pieces JanusFlow instantiates are here: its UViT
blocks never down- or upsample (both flags are off in the official classes), so a block is its
ConvNeXt ``res_blocks`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _rms_norm(channels: int, eps: float) -> nn.Module:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    return LlamaRMSNorm(channels, eps=eps)


def _channels_last(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-channel norm to an NCHW tensor."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on NHWC tensors: ``bias + (weight * n + 1) * x`` with ``n`` the channel-relative L2 norm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.bias = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return torch.addcmul(self.bias, self.weight * nx + 1, x)


class ConvNextBlock(nn.Module):
    """Depthwise 7x7 -> RMSNorm -> MLP with GRN, residual, then a FiLM from the time embedding."""

    def __init__(self, channels: int, hidden_size: int, norm_eps: float, use_bias: bool, ffn_factor: int = 4) -> None:
        super().__init__()
        inner = int(channels * ffn_factor)
        self.depthwise = nn.Conv2d(channels, channels, kernel_size=7, padding=3, groups=channels, bias=use_bias)
        self.norm = _rms_norm(channels, norm_eps)
        self.channelwise_linear_1 = nn.Linear(channels, inner, bias=use_bias)
        self.channelwise_act = nn.GELU()
        self.channelwise_norm = GlobalResponseNorm(inner)
        self.channelwise_linear_2 = nn.Linear(inner, channels, bias=use_bias)
        self.cond_embeds_mapper = nn.Linear(hidden_size, channels * 2, bias=use_bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).permute(0, 2, 3, 1)
        y = self.channelwise_linear_1(self.norm(y))
        y = self.channelwise_linear_2(self.channelwise_norm(self.channelwise_act(y)))
        x = x + y.permute(0, 3, 1, 2)
        scale, shift = self.cond_embeds_mapper(F.silu(cond)).chunk(2, dim=1)
        return torch.addcmul(shift[:, :, None, None], x, (1 + scale)[:, :, None, None])


class UVitBlock(nn.Module):
    """A stack of time-conditioned ConvNeXt blocks (``mid_block.res_blocks.N``)."""

    def __init__(self, channels: int, num_res_blocks: int, hidden_size: int, norm_eps: float, use_bias: bool) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ConvNextBlock(channels, hidden_size, norm_eps, use_bias) for _ in range(num_res_blocks)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x, emb)
        return x


class ShallowUViTEncoder(nn.Module):
    """Latent z (B, c, H, W) and time t in [0, 1000) -> tokens (B, C, H/s, W/s), time embedding (B, D), skips."""

    def __init__(
        self,
        input_channels: int = 3,
        stride: int = 4,
        kernel_size: int = 7,
        padding: int | None = None,
        block_out_channels: Sequence[int] = (768,),
        layers_in_middle: int = 2,
        hidden_size: int = 2048,
        use_bias: bool = True,
        norm_eps: float = 1e-6,
        use_mid_block: bool = True,
        **_: object,  # config keys without effect at inference (dropout, elementwise_affine)
    ) -> None:
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        super().__init__()
        width = block_out_channels[0]
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, hidden_size, sample_proj_bias=use_bias)
        if padding is None:
            padding = math.ceil(kernel_size - stride)
        self.in_conv = nn.Conv2d(input_channels, width, kernel_size=kernel_size, stride=stride, padding=padding)
        self.mid_block = (
            UVitBlock(block_out_channels[-1], layers_in_middle, hidden_size, norm_eps, use_bias)
            if use_mid_block else None
        )

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        t_emb = self.time_proj(timesteps.flatten()).view(x.shape[0], -1).to(x.dtype)
        t_emb = self.time_embed(t_emb)
        x_emb = self.in_conv(x)
        if self.mid_block is not None:
            x_emb = self.mid_block(x_emb, t_emb)
        return x_emb, t_emb, [x_emb]


class Unpatchify(nn.Module):
    """RMSNorm -> 1x1 conv to ``out * p * p`` channels -> PixelShuffle(p)."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, use_bias: bool, eps: float) -> None:
        super().__init__()
        self.norm = _rms_norm(in_channels, eps)
        self.unpatch_conv = nn.Conv2d(in_channels, out_channels * patch_size**2, kernel_size=1, bias=use_bias)
        self.pixel_shuffle = nn.PixelShuffle(patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixel_shuffle(self.unpatch_conv(_channels_last(self.norm, x)))


class ShallowUViTDecoder(nn.Module):
    """LLM tokens (B, C, h, w) + the encoder's skip + time embedding -> velocity (B, c, h*2^u, w*2^u)."""

    def __init__(
        self,
        in_channels: int = 768,
        out_channels: int = 3,
        block_out_channels: Sequence[int] = (768,),
        upsamples: int = 2,
        layers_in_middle: int = 2,
        hidden_size: int = 2048,
        norm_eps: float = 1e-6,
        use_bias: bool = True,
        use_mid_block: bool = True,
        **_: object,
    ) -> None:
        super().__init__()
        skip = block_out_channels[-1]
        self.mid_block = (
            UVitBlock(in_channels + skip, layers_in_middle, hidden_size, norm_eps, use_bias) if use_mid_block else None
        )
        self.out_convs = nn.ModuleList()
        for rank in range(upsamples):
            inner = skip + in_channels if rank == 0 else skip
            out = out_channels if rank == upsamples - 1 else skip
            self.out_convs.append(Unpatchify(inner, out, patch_size=2, use_bias=use_bias, eps=norm_eps))
        self.input_norm = _rms_norm(in_channels, norm_eps)

    def forward(self, x: torch.Tensor, hs: list[torch.Tensor], t_emb: torch.Tensor) -> torch.Tensor:
        if len(hs) != 1:
            raise ValueError(f"the decoder takes exactly one skip tensor from the encoder, got {len(hs)}")
        x = torch.cat([_channels_last(self.input_norm, x), hs[-1]], dim=1)
        if self.mid_block is not None:
            x = self.mid_block(x, t_emb)
        for out_conv in self.out_convs:
            x = out_conv(x)
        return x
