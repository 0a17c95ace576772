"""OmniGen2 diffusion transformer, written against diffusers' Lumina2 building blocks.

OmniGen2's transformer is Lumina2's with reference images added: every parameter that diffusers'
``Lumina2Transformer2DModel`` has keeps its name and shape, so the blocks, the timestep/caption
embedding and the output norm are diffusers' own. What is new here:

* reference-image latents are patch-embedded separately, tagged with a learned per-index vector
  (``image_index_embedding``, at most 5 images) and refined one image at a time;
* the joint sequence is ``[valid text tokens | ref image 0 | ref image 1 | ... | target image]``;
* 3-axis rotary positions: text token k gets (k, k, k); each image gets (offset, row, col), where the
  offset starts at the text length and grows by ``max(rows, cols)`` of every reference image, so
  images are told apart by the first axis.

The class name, config keys and parameter names match the ``transformer/`` folder of the official
``OmniGen2/OmniGen2`` checkpoint, so ``from_pretrained(..., subfolder="transformer")`` loads it as is.
Attention is diffusers' SDPA processor (keys masked, padded queries computed and discarded).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import LuminaLayerNormContinuous
from diffusers.models.transformers.transformer_lumina2 import (
    Lumina2CombinedTimestepCaptionEmbedding,
    Lumina2TransformerBlock,
)
from torch import nn
from torch.nn.utils.rnn import pad_sequence

MAX_REF_IMAGES = 5  # rows of image_index_embedding in the official checkpoint
ROPE_THETA = 10000.0

RefImages = list[list[torch.Tensor] | None] | None


def tiny_transformer_config() -> dict[str, Any]:
    """Config of a few-MB OmniGen2 transformer (the golden one) for fast contract tests.

    Head dim 16 = sum(axes_dim_rope); every branch (refiners, ref images, GQA) is exercised.
    """
    return {
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": None,
        "hidden_size": 64,
        "num_layers": 2,
        "num_refiner_layers": 1,
        "num_attention_heads": 4,
        "num_kv_heads": 2,
        "multiple_of": 16,
        "ffn_dim_multiplier": None,
        "norm_eps": 1e-5,
        "axes_dim_rope": [4, 6, 6],
        "axes_lens": [64, 64, 64],
        "text_feat_dim": 32,
        "timestep_scale": 1000.0,
    }


def _blocks(n: int, modulation: bool, *args: Any) -> nn.ModuleList:
    return nn.ModuleList(
        [Lumina2TransformerBlock(*args, modulation=modulation) for _ in range(n)]
    )


def _patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(C, H, W) -> (H/p * W/p, p*p*C), row-major over patches, (p1, p2, c) inside a patch."""
    c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"latent size {h}x{w} is not a multiple of the patch size {p}")
    return (
        x.reshape(c, h // p, p, w // p, p)
        .permute(1, 3, 2, 4, 0)
        .reshape((h // p) * (w // p), p * p * c)
    )


def _unpatchify(tokens: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_patchify` for an (h, w) latent."""
    c = tokens.shape[-1] // (p * p)
    return (
        tokens.reshape(h // p, w // p, p, p, c).permute(4, 0, 2, 1, 3).reshape(c, h, w)
    )


def _grid_positions(
    offset: int, rows: int, cols: int, device: torch.device
) -> torch.Tensor:
    """(rows*cols, 3) ids: (offset, row, col) in row-major order."""
    r = torch.arange(rows, device=device).repeat_interleave(cols)
    c = torch.arange(cols, device=device).repeat(rows)
    return torch.stack([torch.full_like(r, offset), r, c], dim=-1)


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a list of (L_i, ...) tensors to (B, max L, ...) and return the key mask (B, max L)."""
    lengths = torch.tensor([s.shape[0] for s in seqs], device=seqs[0].device)
    mask = (
        torch.arange(int(lengths.max()), device=lengths.device)[None] < lengths[:, None]
    )
    return pad_sequence(seqs, batch_first=True), mask


class OmniGen2Transformer2DModel(ModelMixin, ConfigMixin):
    """OmniGen2 velocity predictor: latents + text features + reference latents -> velocity.

    Time runs from 0 (noise) to 1 (data); ``timestep`` is that float and is scaled by
    ``timestep_scale`` inside the model.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["Lumina2TransformerBlock"]
    _skip_layerwise_casting_patterns: ClassVar[list[str]] = ["x_embedder", "norm"]

    @register_to_config
    def __init__(
        self,
        patch_size: int = 2,
        in_channels: int = 16,
        out_channels: int | None = None,
        hidden_size: int = 2304,
        num_layers: int = 26,
        num_refiner_layers: int = 2,
        num_attention_heads: int = 24,
        num_kv_heads: int = 8,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        norm_eps: float = 1e-5,
        axes_dim_rope: tuple[int, ...] = (32, 32, 32),
        axes_lens: tuple[int, ...] = (300, 512, 512),
        text_feat_dim: int = 1024,
        timestep_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if hidden_size // num_attention_heads != sum(axes_dim_rope):
            raise ValueError(
                f"head dim {hidden_size // num_attention_heads} != sum(axes_dim_rope) {sum(axes_dim_rope)}"
            )
        self.out_channels = out_channels or in_channels
        patch_dim = patch_size * patch_size * in_channels
        block_args = (
            hidden_size,
            num_attention_heads,
            num_kv_heads,
            multiple_of,
            ffn_dim_multiplier,
            norm_eps,
        )

        self.x_embedder = nn.Linear(patch_dim, hidden_size)
        self.ref_image_patch_embedder = nn.Linear(patch_dim, hidden_size)
        self.time_caption_embed = Lumina2CombinedTimestepCaptionEmbedding(
            hidden_size=hidden_size, cap_feat_dim=text_feat_dim, norm_eps=norm_eps
        )
        # diffusers' Lumina2 embeds raw timesteps; OmniGen2 feeds t in [0, 1] and scales the sinusoid
        # argument inside the projection (not before it), which is what the checkpoint was trained with.
        self.time_caption_embed.time_proj = Timesteps(
            256, flip_sin_to_cos=True, downscale_freq_shift=0.0, scale=timestep_scale
        )
        self.noise_refiner = _blocks(num_refiner_layers, True, *block_args)
        self.ref_image_refiner = _blocks(num_refiner_layers, True, *block_args)
        self.context_refiner = _blocks(num_refiner_layers, False, *block_args)
        self.layers = _blocks(num_layers, True, *block_args)
        self.norm_out = LuminaLayerNormContinuous(
            embedding_dim=hidden_size,
            conditioning_embedding_dim=min(hidden_size, 1024),
            elementwise_affine=False,
            eps=1e-6,
            bias=True,
            out_dim=patch_size * patch_size * self.out_channels,
        )
        self.image_index_embedding = nn.Parameter(
            torch.randn(MAX_REF_IMAGES, hidden_size) * 0.02
        )
        self.gradient_checkpointing = False

    def rotary(self, position_ids: torch.Tensor) -> torch.Tensor:
        """Complex rotations (..., head_dim/2) for integer ids (..., 3), computed in float64.

        Same values as gathering rows of the per-axis ``get_1d_rotary_pos_embed`` tables (float64,
        theta 10000) that upstream precomputes, without the tables' ``axes_lens`` bound.
        """
        angles = []
        for axis, dim in enumerate(self.config.axes_dim_rope):
            inv_freq = 1.0 / ROPE_THETA ** (
                torch.arange(0, dim, 2, dtype=torch.float64, device=position_ids.device)
                / dim
            )
            angles.append(
                position_ids[..., axis : axis + 1].to(torch.float64) * inv_freq
            )
        angles_t = torch.cat(angles, dim=-1)
        return torch.polar(torch.ones_like(angles_t), angles_t)

    def _run(
        self,
        blocks: nn.ModuleList,
        x: torch.Tensor,
        mask: torch.Tensor,
        rope: torch.Tensor,
        temb: torch.Tensor | None,
    ) -> torch.Tensor:
        for block in blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, mask, rope, temb)
            else:
                x = block(x, mask, rope, temb)
        return x

    def forward(
        self,
        hidden_states: torch.Tensor | list[torch.Tensor],
        timestep: torch.Tensor | float,
        text_hidden_states: torch.Tensor,
        text_attention_mask: torch.Tensor,
        ref_image_hidden_states: RefImages = None,
        return_dict: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Predict the velocity for each target latent.

        Args:
            hidden_states: noisy latents, a (B, C, H, W) tensor or a list of (C, H, W) of any sizes.
            timestep: t in [0, 1], scalar or (B,).
            text_hidden_states: (B, L, text_feat_dim) text features.
            text_attention_mask: (B, L), True for real tokens; must be right-padded (valid prefix).
            ref_image_hidden_states: per sample, None or a list of (C, h, w) reference latents;
                samples may have different numbers and sizes of references.
            return_dict: accepted for diffusers-style call sites; the output is always returned bare.

        Returns:
            velocity in the same form as ``hidden_states`` (a tensor, or a list of (C, H, W)), in the
            model dtype (inputs are cast to it, so fp32 latents can drive a bf16 model).
        """
        del return_dict
        dtype, p = self.dtype, self.config.patch_size
        targets = [t.to(dtype) for t in hidden_states]
        batch, device = len(targets), targets[0].device
        refs = [
            [r.to(dtype) for r in rs or []]
            for rs in (ref_image_hidden_states or [None] * batch)
        ]
        if len(refs) != batch or text_hidden_states.shape[0] != batch:
            raise ValueError(
                "hidden_states, text_hidden_states and ref_image_hidden_states need one entry per sample"
            )
        if max(len(r) for r in refs) > MAX_REF_IMAGES:
            raise ValueError(
                f"at most {MAX_REF_IMAGES} reference images per sample are supported"
            )
        timestep = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch)

        mask = text_attention_mask.to(device=device, dtype=torch.bool)
        text_lens = mask.sum(dim=1)
        if not torch.equal(
            mask, torch.arange(mask.shape[1], device=device)[None] < text_lens[:, None]
        ):
            raise ValueError(
                "text_attention_mask must be right-padded (True for a prefix of each row)"
            )
        text_lens_list: list[int] = text_lens.tolist()

        temb, text = self.time_caption_embed(
            targets[0], timestep, text_hidden_states.to(dtype)
        )

        # Positions: text k -> (k, k, k); images (offset, row, col), offset advancing per reference.
        text_ids = torch.arange(mask.shape[1], device=device)[:, None].expand(-1, 3)
        ref_ids: list[list[torch.Tensor]] = []
        target_ids: list[torch.Tensor] = []
        for n_text, sample_refs, target in zip(text_lens_list, refs, targets, strict=True):
            offset, ids = n_text, []
            for ref in sample_refs:
                rows, cols = ref.shape[-2] // p, ref.shape[-1] // p
                ids.append(_grid_positions(offset, rows, cols, device))
                offset += max(rows, cols)
            ref_ids.append(ids)
            target_ids.append(
                _grid_positions(
                    offset, target.shape[-2] // p, target.shape[-1] // p, device
                )
            )

        text = self._run(
            self.context_refiner,
            text,
            mask,
            self.rotary(text_ids)[None].expand(batch, -1, -1),
            None,
        )

        img, img_mask = _pad([self.x_embedder(_patchify(t, p)) for t in targets])
        img = self._run(
            self.noise_refiner, img, img_mask, self.rotary(_pad(target_ids)[0]), temb
        )

        # Reference images: embed, tag with their index, refine each image on its own.
        flat_refs = [
            (i, j, ref)
            for i, sample_refs in enumerate(refs)
            for j, ref in enumerate(sample_refs)
        ]
        refined: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        if flat_refs:
            tokens = [
                self.ref_image_patch_embedder(_patchify(ref, p))
                + self.image_index_embedding[j]
                for _, j, ref in flat_refs
            ]
            ref_x, ref_mask = _pad(tokens)
            ref_rope, _ = _pad([ref_ids[i][j] for i, j, _ in flat_refs])
            owner = torch.tensor([i for i, _, _ in flat_refs], device=device)
            ref_x = self._run(
                self.ref_image_refiner,
                ref_x,
                ref_mask,
                self.rotary(ref_rope),
                temb[owner],
            )
            for k, (i, _, _) in enumerate(flat_refs):
                refined[i].append(ref_x[k, : tokens[k].shape[0]])

        # Joint sequence [text | refs | target] per sample, right-padded across the batch.
        img_lens = [ids.shape[0] for ids in target_ids]
        joint, joint_mask = _pad(
            [
                torch.cat(
                    [text[i, : text_lens_list[i]], *refined[i], img[i, : img_lens[i]]]
                )
                for i in range(batch)
            ]
        )
        joint_rope, _ = _pad(
            [
                torch.cat([text_ids[: text_lens_list[i]], *ref_ids[i], target_ids[i]])
                for i in range(batch)
            ]
        )
        joint = self._run(self.layers, joint, joint_mask, self.rotary(joint_rope), temb)
        out = self.norm_out(joint, temb)

        seq_lens = joint_mask.sum(dim=1).tolist()
        velocity = [
            _unpatchify(
                out[i, seq_lens[i] - img_lens[i] : seq_lens[i]],
                p,
                t.shape[-2],
                t.shape[-1],
            )
            for i, t in enumerate(targets)
        ]
        return (
            torch.stack(velocity)
            if isinstance(hidden_states, torch.Tensor)
            else velocity
        )
