"""DeepGen's prompt, VLM pass and layer stacking: text (and reference images) -> DiT conditioning.

Upstream rules reproduced here (deepgenteam/deepgen, ``Qwen2p5VLStableDiffusion3HF``):

* text-to-image wraps each prompt as ``INSTRUCTION.format(GENERATION.format(p))``; edits put the
  image placeholders and a newline before the instruction instead, with no "Generate an image:";
* cond and uncond are tokenised as **one left-padded batch** (cond first); pad rows stay in the
  sequence all the way to the DiT, so each branch depends on the other's length;
* the meta-queries are appended to every row (ids 0 for the rope index, mask 1);
* positions are Qwen2.5-VL's 3-D rope index over the valid tokens, pads at 1;
* the VLM's text model runs once; hidden states ``range(L-1, 0, -6)`` (the un-normed outputs of
  every sixth layer, from the last-but-one down) are concatenated in that descending order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

LAYER_STRIDE = 6  # upstream: selected_layers = range(num_layers - 1, 0, -6)
VIT_SCALE = 28 / 32  # upstream resizes edit inputs by 28/32 before the ViT (512 -> 448)
VIT_MEAN = (0.48145466, 0.4578275, 0.40821073)  # upstream's IMAGE_MEAN / IMAGE_STD (the CLIP values)
VIT_STD = (0.26862954, 0.26130258, 0.27577711)

# configs/models/deepgen_scb.py's prompt_template (the repo's prompt_template.json is read when present).
DEFAULT_TEMPLATE = {
    "IMG_START_TOKEN": "<|vision_start|>",
    "IMG_END_TOKEN": "<|vision_end|>",
    "IMG_CONTEXT_TOKEN": "<|image_pad|>",
    "INSTRUCTION": "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n",
    "GENERATION": "Generate an image: {input}",
}


@dataclass(frozen=True)
class PromptTemplate:
    instruction: str
    generation: str
    image_start: str
    image_end: str
    image_token: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptTemplate:
        data = {**DEFAULT_TEMPLATE, **data}
        return cls(
            instruction=data["INSTRUCTION"],
            generation=data["GENERATION"],
            image_start=data["IMG_START_TOKEN"],
            image_end=data["IMG_END_TOKEN"],
            image_token=data["IMG_CONTEXT_TOKEN"],
        )

    @classmethod
    def from_file(cls, path: Path | None) -> PromptTemplate:
        if path is None:
            return cls.from_dict({})
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def texts(self, prompts: list[str], image_grids: torch.Tensor | None = None, merge_size: int = 2) -> list[str]:
        """One chat text per prompt; with image grids, each text carries every image's placeholders."""
        from umm.adapters.omnigen2 import IMAGE_TOKEN, expand_image_tokens

        # A literal placeholder in the text would desynchronise placeholders and images: drop it.
        prompts = [p.replace(self.image_token, "").replace(IMAGE_TOKEN, "") for p in prompts]
        if image_grids is None:
            return [self.instruction.format(input=self.generation.format(input=p)) for p in prompts]
        images = (self.image_start + IMAGE_TOKEN + self.image_end) * len(image_grids)
        texts = [self.instruction.format(input=f"{images}\n{p}") for p in prompts]
        texts = [expand_image_tokens(t, image_grids, merge_size) for t in texts]
        return [t.replace(IMAGE_TOKEN, self.image_token) for t in texts]


@dataclass
class Conditioning:
    """The VLM inputs and what the DiT receives, rows in tokenised order (cond first)."""

    input_ids: torch.Tensor  # (B, P) tokenizer output
    attention_mask: torch.Tensor  # (B, P)
    inputs_embeds: torch.Tensor  # (B, P + Q, H)
    llm_attention_mask: torch.Tensor  # (B, P + Q)
    position_ids: torch.Tensor  # (3, B, P + Q)
    stacked: torch.Tensor  # (B, P + Q, k * H)
    pooled: torch.Tensor  # (B, pooled_projection_dim)
    prompt_embeds: torch.Tensor  # (B, P + Q, joint_attention_dim)


def selected_layers(num_layers: int, expected: int) -> list[int]:
    """Indices into ``hidden_states`` (embeddings first) that the connector's projector expects."""
    layers = list(range(num_layers - 1, 0, -LAYER_STRIDE))
    if len(layers) != expected:
        raise ValueError(
            f"the connector expects {expected} stacked VLM layers but a {num_layers}-layer VLM gives "
            f"{len(layers)} ({layers}); the VLM and connector do not belong together"
        )
    return layers


def tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    """All rows in one left-padded batch, as upstream (the joint padding changes the result)."""
    tokens = tokenizer(texts, add_special_tokens=True, padding=True, padding_side="left", return_tensors="pt")
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


@torch.no_grad()
def encode(
    vlm,
    connector,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_embeds: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
) -> Conditioning:
    """One VLM pass over the batch (prompt + meta-queries), then the connector."""
    config = vlm.config
    image_token_id = config.image_token_id
    language_model = vlm.model.language_model
    device = connector.meta_queries.device
    batch, queries = input_ids.shape[0], connector.num_queries
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)

    ids = torch.cat([input_ids, input_ids.new_zeros(batch, queries)], dim=1)
    mask = torch.cat([attention_mask, attention_mask.new_ones(batch, queries)], dim=1)
    grid = image_grid_thw.to(device) if image_grid_thw is not None else None
    if grid is not None:  # the same images in every row
        grid = grid.repeat(batch, 1)
    positions, _ = vlm.model.get_rope_index(
        ids, (ids == image_token_id).int(), image_grid_thw=grid, attention_mask=mask
    )
    positions = positions.masked_fill(~mask.bool()[None], 1)

    embeds = language_model.get_input_embeddings()(input_ids)
    if image_embeds is not None:
        image_rows = input_ids == image_token_id
        rows = image_embeds.to(embeds.dtype).repeat(batch, 1)
        if int(image_rows.sum()) != rows.shape[0]:
            raise ValueError(f"{int(image_rows.sum())} image placeholders for {rows.shape[0]} image features")
        embeds = embeds.masked_scatter(image_rows[..., None], rows)
    meta = connector.meta_queries[None].to(embeds.dtype).expand(batch, -1, -1)
    embeds = torch.cat([embeds, meta], dim=1)

    out = language_model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_hidden_states=True, use_cache=False
    )
    hidden = out.hidden_states
    layers = selected_layers(len(hidden) - 1, connector.num_selected_layers)
    stacked = torch.cat([hidden[i] for i in layers], dim=-1).to(connector.projector_1.weight.dtype)
    pooled, prompt_embeds = connector(stacked)
    return Conditioning(input_ids, attention_mask, embeds, mask, positions, stacked, pooled, prompt_embeds)


def vit_pixels(pixels: torch.Tensor, vision_config) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2.5-VL ViT input for one (1, 3, H, W) image in [-1, 1]: (patches, grid_thw (1, 3)).

    Upstream resizes by 28/32 (bilinear, no antialias), normalises with the CLIP mean/std, repeats
    the frame over the temporal patch and flattens in the Qwen2-VL order.
    """
    patch = vision_config.patch_size
    merge = vision_config.spatial_merge_size
    temporal = vision_config.temporal_patch_size
    x = F.interpolate(pixels, scale_factor=VIT_SCALE, mode="bilinear", align_corners=False)
    mean = torch.tensor(VIT_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(VIT_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = ((x + 1) / 2 - mean) / std
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    if gh % merge or gw % merge or h % patch or w % patch:
        raise ValueError(f"ViT input {h}x{w} is not a multiple of {patch * merge}")
    x = x[:, None].expand(b, temporal, c, h, w)
    x = x.reshape(b, 1, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    # (b t tp c h m p w n q) -> (b t h w m n) (c tp p q)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9).reshape(b * gh * gw, c * temporal * patch * patch)
    grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long, device=x.device)
    return x, grid
