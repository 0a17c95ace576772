"""Bagel's interleaved inference: contexts of text / ViT / VAE segments, greedy or sampled decoding, and
the flow sampler with text + image guidance inside a CFG interval and CFG-renorm.

This follows upstream's ``InterleaveInferencer`` and ``Bagel.prepare_* / forward_cache_update_* /
generate_text / generate_image`` (ByteDance-Seed/Bagel), for one sample at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from PIL import Image

from umm.ports.bagel.model import Bagel, Context

# inferencer.py: the system prompts of think mode.
VLM_THINK_SYSTEM_PROMPT = (
    "You should first think about the reasoning process in the mind and then provide the user with the answer. \n"
    "The reasoning process is enclosed within <think> </think> tags, i.e. <think> reasoning process here </think>"
    " answer here"
)
GEN_THINK_SYSTEM_PROMPT = (
    "You should first think about the planning process in the mind and then generate the image. \n"
    "The planning process is enclosed within <think> </think> tags, i.e. <think> planning process here </think>"
    " image here"
)
MAX_PIXELS = 14 * 14 * 9 * 1024  # ImageTransform's default max_pixels


@dataclass(frozen=True)
class SpecialIds:
    bos: int  # <|im_start|>
    eos: int  # <|im_end|>
    start_of_image: int  # <|vision_start|>
    end_of_image: int  # <|vision_end|>

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialIds:
        ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                                              "<|vision_end|>")]
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise ValueError("the tokenizer lacks Bagel's special tokens (<|im_start|>, <|vision_start|>, ...)")
        return cls(*ids)


# -- image transforms (data/transforms.py ImageTransform) --------------------------------------------
@dataclass(frozen=True)
class ImageTransform:
    max_size: int
    min_size: int
    stride: int
    max_pixels: int = MAX_PIXELS

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(W', H') of MaxLongEdgeMinShortEdgeResize: fit the long edge, lift the short one, snap to stride."""
        scale = min(self.max_size / max(width, height), 1.0)
        scale = max(scale, self.min_size / min(width, height))
        width, height = self._apply(width, height, scale)
        if width * height > self.max_pixels:
            width, height = self._apply(width, height, self.max_pixels / (width * height))
        if max(width, height) > self.max_size:
            width, height = self._apply(width, height, self.max_size / max(width, height))
        return width, height

    def _apply(self, width: int, height: int, scale: float) -> tuple[int, int]:
        def snap(v: int) -> int:
            return max(self.stride, int(round(v / self.stride) * self.stride))

        return snap(round(width * scale)), snap(round(height * scale))

    def resize(self, image: Image.Image) -> Image.Image:
        size = self.size(*image.size)
        return image if size == image.size else image.resize(size, Image.BICUBIC)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """(3, H', W') in [-1, 1]."""
        return to_tensor(self.resize(image))


def to_tensor(image: Image.Image) -> torch.Tensor:
    import numpy as np

    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
    return (pixels.float() / 255.0 - 0.5) / 0.5


def patchify(image: torch.Tensor, p: int) -> torch.Tensor:
    """(C, H, W) -> (H/p * W/p, p*p*C), row-major tokens in (p_row, p_col, c) order."""
    c, h, w = image.shape
    image = image.reshape(c, h // p, p, w // p, p)
    return torch.einsum("chpwq->hwpqc", image).reshape(-1, p * p * c)


def unpatchify(tokens: torch.Tensor, h: int, w: int, p: int, c: int) -> torch.Tensor:
    """(h*w, p*p*c) -> (1, c, h*p, w*p), the inverse of :func:`patchify`."""
    x = tokens.reshape(1, h, w, p, p, c)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(1, c, h * p, w * p)


def grid_position_ids(h: int, w: int, side: int) -> torch.Tensor:
    """Extrapolated 2-D position ids: row * side + col."""
    return (torch.arange(h)[:, None] * side + torch.arange(w)).flatten()


def to_uint8(decoded: torch.Tensor) -> Image.Image:
    """Upstream's output image: ((x * 0.5 + 0.5).clamp(0, 1) * 255).to(uint8) (truncating)."""
    x = (decoded.float() * 0.5 + 0.5).clamp(0, 1)[0].permute(1, 2, 0) * 255
    return Image.fromarray(x.to(torch.uint8).cpu().numpy())


# -- contexts --------------------------------------------------------------------------------------
class Session:
    """Appends segments to branch contexts and runs the model on them (batch 1, no grad)."""

    def __init__(self, model: Bagel, ids: SpecialIds) -> None:
        self.model, self.ids = model, ids
        self.config = model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _append(self, context: Context, embeds, positions, *, causal, gen_tokens=None, what="") -> Context:
        _, kv = self.model.forward_segment(embeds, positions, context, causal=causal, gen_tokens=gen_tokens)
        n = embeds.shape[0]
        rope = context.rope + (n if causal else 1)
        return Context(kv, context.length + n, rope, (*context.segments, what))

    def add_text(self, context: Context, ids: list[int]) -> Context:
        """``[<|im_start|>] + ids + [<|im_end|>]`` at consecutive positions, causal, und expert."""
        tokens = torch.tensor([self.ids.bos, *ids, self.ids.eos], device=self.device)
        positions = torch.arange(context.rope, context.rope + len(tokens), device=self.device)
        return self._append(context, self.model.embed_text(tokens), positions, causal=True, what="text")

    def vit_rows(self, pixels: torch.Tensor) -> torch.Tensor:
        """LLM input rows of one image (3, H, W) in [-1, 1] with sides multiples of the ViT patch."""
        p = self.config.vit.patch_size
        patches = patchify(pixels, p).to(self.device)
        pos = grid_position_ids(pixels.shape[1] // p, pixels.shape[2] // p, self.config.vit_max_num_patch_per_side)
        return self.model.embed_vit(patches, pos.to(self.device))

    def add_vit_image(self, context: Context, pixels: torch.Tensor) -> Context:
        """``[<|vision_start|>] + ViT rows + [<|vision_end|>]``, one position, bidirectional, und expert."""
        rows = self.vit_rows(pixels)
        embeds = self._with_markers(rows)
        positions = torch.full((embeds.shape[0],), context.rope, device=self.device)
        return self._append(context, embeds, positions, causal=False, what="vit")

    def add_vae_image(self, context: Context, latent: torch.Tensor) -> Context:
        """A clean latent (1, C, h, w) as ``[<|vision_start|>] + tokens + [<|vision_end|>]`` at t = 0."""
        tokens, pos = self.latent_tokens(latent)
        rows = self.model.embed_latents(tokens, 0.0, pos)
        return self._block(context, rows, update=True)

    def latent_tokens(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.config.latent_patch_size
        h, w = latent.shape[-2] // p, latent.shape[-1] // p
        tokens = patchify(latent[0, :, : h * p, : w * p], p).to(self.device)
        return tokens, grid_position_ids(h, w, self.config.max_latent_size).to(self.device)

    def _with_markers(self, rows: torch.Tensor) -> torch.Tensor:
        marks = self.model.embed_text(torch.tensor([self.ids.start_of_image, self.ids.end_of_image],
                                                   device=self.device))
        return torch.cat([marks[:1], rows.to(marks.dtype), marks[1:]])

    def _block(self, context: Context, rows: torch.Tensor, *, update: bool):
        """A latent block (markers und, latents gen) at the context's position, bidirectional."""
        embeds = self._with_markers(rows)
        n = embeds.shape[0]
        gen = torch.ones(n, dtype=torch.bool, device=self.device)
        gen[0] = gen[-1] = False
        positions = torch.full((n,), context.rope, device=self.device)
        hidden, kv = self.model.forward_segment(embeds, positions, context, causal=False, gen_tokens=gen)
        if update:
            return Context(kv, context.length + n, context.rope + 1, (*context.segments, "vae"))
        return hidden[1:-1]

    def velocity(self, context: Context, x_t: torch.Tensor, t: float | torch.Tensor, pos: torch.Tensor):
        """v(x_t, t) of the noisy latent block (the query, never cached) in one branch."""
        rows = self.model.embed_latents(x_t, t, pos)
        return self.model.llm2vae(self._block(context, rows, update=False)).float()

    # -- text out ------------------------------------------------------------------------------------
    def decode(
        self,
        context: Context,
        max_length: int,
        pick: Callable[[torch.Tensor], int],
    ) -> Iterator[int]:
        """Feed <|im_start|>, then each picked token; yields the answer's tokens, stops at <|im_end|>.

        As upstream's ``generate_text``, at most ``max_length`` tokens are fed (the start token
        included), so the last prediction at the limit is dropped.
        """
        token = self.ids.bos
        for step in range(max_length):
            if step:
                yield token
            embeds = self.model.embed_text(torch.tensor([token], device=self.device))
            positions = torch.tensor([context.rope], device=self.device)
            hidden, kv = self.model.forward_segment(embeds, positions, context, causal=True)
            context = Context(kv, context.length + 1, context.rope + 1, context.segments)
            token = pick(self.model.language_model.lm_head(hidden)[0].float())
            if token == self.ids.eos:
                return


# -- the flow sampler ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Guidance:
    cfg_text_scale: float = 4.0
    cfg_img_scale: float = 1.5
    cfg_interval: tuple[float, float] = (0.4, 1.0)
    cfg_renorm_min: float = 0.0
    cfg_renorm_type: str = "global"
    num_timesteps: int = 50
    timestep_shift: float = 3.0


@dataclass(frozen=True)
class Branches:
    cond: Context
    text_uncond: Context
    img_uncond: Context


def timesteps(num: int, shift: float) -> torch.Tensor:
    """t_k = s * tau / (1 + (s - 1) * tau) over tau = linspace(1, 0, num)."""
    tau = torch.linspace(1, 0, num)
    return shift * tau / (1 + (shift - 1) * tau)


def combine(v_c, u_t, u_i, text_scale: float, img_scale: float, renorm_type: str, renorm_min: float):
    """Upstream's guided velocity (``_forward_flow``): text then image CFG with CFG-renorm."""
    if text_scale <= 1.0:
        return v_c
    a = u_t + text_scale * (v_c - u_t)
    if renorm_type == "text_channel":
        scale = (v_c.norm(dim=-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) + 1e-8)).clamp(renorm_min, 1.0)
        a = a * scale
        return u_i + img_scale * (a - u_i) if img_scale > 1.0 else a
    b = u_i + img_scale * (a - u_i) if img_scale > 1.0 else a
    if renorm_type == "global":
        norm_c, norm_b = v_c.norm(), b.norm()
    elif renorm_type == "channel":
        norm_c, norm_b = v_c.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    else:
        raise ValueError(f"unknown CFG renorm type {renorm_type!r}")
    return b * (norm_c / (norm_b + 1e-8)).clamp(renorm_min, 1.0)


@dataclass
class Trace:
    """What one sampler run computed, step by step (for parity tests and reports)."""

    timesteps: list[float]
    cfg_active: list[bool]
    steps: list[dict[str, torch.Tensor]]


def sample_latents(
    session: Session,
    branches: Branches,
    height: int,
    width: int,
    noise: torch.Tensor,
    guidance: Guidance,
    on_step: Callable[[int, int], None] | None = None,
    trace: Trace | None = None,
) -> torch.Tensor:
    """Euler from t = 1 (noise, (N, p*p*C) tokens) to 0; returns the final tokens (fp32)."""
    config = session.config
    h, w = height // config.latent_downsample, width // config.latent_downsample
    pos = grid_position_ids(h, w, config.max_latent_size).to(session.device)
    t_all = timesteps(guidance.num_timesteps, guidance.timestep_shift)
    dts = t_all[:-1] - t_all[1:]
    low, high = guidance.cfg_interval
    x = noise.float().to(session.device)
    total = len(t_all) - 1
    for i, t in enumerate(t_all[:-1]):
        active = bool(t > low) and bool(t <= high)
        text_scale = guidance.cfg_text_scale if active else 1.0
        img_scale = guidance.cfg_img_scale if active else 1.0
        v_c = session.velocity(branches.cond, x, t, pos)
        u_t = session.velocity(branches.text_uncond, x, t, pos) if text_scale > 1.0 else None
        u_i = None
        if img_scale > 1.0:
            # T2I without thinking: the image-free branch is the cond context itself (same cache object).
            same = branches.img_uncond is branches.cond
            u_i = v_c if same else session.velocity(branches.img_uncond, x, t, pos)
        v = combine(v_c, u_t, u_i, text_scale, img_scale, guidance.cfg_renorm_type, guidance.cfg_renorm_min)
        if trace is not None:
            trace.timesteps.append(float(t))
            trace.cfg_active.append(active)
            trace.steps.append({"x_t": x, "v_cond": v_c, "v_text_uncond": u_t, "v_img_uncond": u_i, "velocity": v})
        x = x - v * dts[i].to(x.device)
        if on_step is not None:
            on_step(i + 1, total)
    return x


def with_text(branches: Branches, session: Session, ids: list[int]) -> Branches:
    """A text segment: cond and img_uncond grow; text_uncond keeps the context before it (inferencer)."""
    cond = session.add_text(branches.cond, ids)
    img = cond if branches.img_uncond is branches.cond else session.add_text(branches.img_uncond, ids)
    return Branches(cond, branches.cond, img)


def with_image(branches: Branches, session: Session, vit_pixels: torch.Tensor, latent: torch.Tensor | None):
    """An input image: its VAE block (editing only), then its ViT block, in cond; text_uncond = the new cond.

    img_uncond never sees images.
    """
    cond = branches.cond if latent is None else session.add_vae_image(branches.cond, latent)
    cond = session.add_vit_image(cond, vit_pixels)
    img = branches.img_uncond
    if img is branches.cond:  # it no longer shares the cond context
        img = Context(img.kv, img.length, img.rope, img.segments)
    return Branches(cond, cond, img)


def empty_branches() -> Branches:
    context = Context()
    return Branches(context, context, context)


__all__ = [
    "GEN_THINK_SYSTEM_PROMPT",
    "VLM_THINK_SYSTEM_PROMPT",
    "Branches",
    "Guidance",
    "ImageTransform",
    "Session",
    "SpecialIds",
    "Trace",
    "combine",
    "empty_branches",
    "grid_position_ids",
    "patchify",
    "sample_latents",
    "timesteps",
    "to_tensor",
    "to_uint8",
    "unpatchify",
    "with_image",
    "with_text",
]
