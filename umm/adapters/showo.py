"""Show-o (v1, 512 px): one Phi-1.5 transformer that answers about images and generates MagViTv2 tokens.

Three repos: the Show-o checkpoint (diffusers-style ``config.json`` + ``pytorch_model.safetensors``,
:mod:`umm.ports.showo`), the ``magvitv2`` component (the image tokenizer, :mod:`umm.ports.magvitv2`) and
the ``phi`` component (``microsoft/phi-1_5``: the text tokenizer and the LLM's config.json, which the
Show-o repo does not carry).

* Understanding: ``<|mmu|> <|soi|> image <|eoi|> BOS "USER: \\n{q} ASSISTANT:"`` decoded token by token
  with a KV cache (upstream recomputes the full sequence each token; the tokens are the same).
* Generation: guided MaskGIT over the N image tokens (:mod:`umm.ports.maskgit`).
* Edit = inpainting, as upstream's inpainting demo: the image is tokenized, the tokens under the region to
  change are masked and regenerated for the instruction (a description of the wanted image). The region
  is a second input image used as a mask (white = change, upstream's mask format) or, without one, the
  box ``box_left … box_bottom`` (fractions of the square-cropped image).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import InputError, ModelLoadError
from umm.types import EditRequest, GenerateRequest, ImageResult, Message, UnderstandRequest

TOKENIZER_FILES = ["config.json", "tokenizer*", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json"]


class ShowoAdapter(Adapter):
    family = "showo"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.model = None
        self.vq = None
        self.tokenizer = None
        self.ids = None

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import AutoTokenizer

        from umm.ports.magvitv2.model import load_for
        from umm.ports.showo.model import WEIGHTS, ShowoIds, load_language_model, read_json

        device = torch.device(device)
        with load_errors(self.spec):
            root = self.snapshot_dir(None, ["config.json", WEIGHTS])
            config = read_json(root / "config.json")
            if config.get("w_clip_vit"):
                raise ModelLoadError(f"{self.spec.name}: the CLIP-ViT variants of Show-o are not supported.")
            phi = self.snapshot_dir("phi", TOKENIZER_FILES)
            local = root / str(config.get("llm_model_path", ""))
            llm_config = read_json((local if local.is_dir() else phi) / "config.json")
            self.tokenizer = AutoTokenizer.from_pretrained(phi)
            self.model = load_language_model(root, llm_config, dtype, device)
            max_text_len = int(self.spec.options.get("max_text_len", 128))
            self.ids = ShowoIds.from_config(
                config, self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, max_text_len
            )
            self.vq = load_for(self, self.ids.codebook_size, device)
        self.device, self.dtype = device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.model, self.vq) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer",)

    @property
    def grid(self) -> int:
        return math.isqrt(self.ids.num_image_tokens)

    @property
    def resolution(self) -> int:
        return self.grid * self.vq.downsample_factor

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        from umm.ports.showo.generate import mmu_tokens
        from umm.ports.showo.prompting import mmu_row

        capability = self.spec.capability("understand")
        images = [image for m in request.messages for image in m.images]
        capability.check_images(len(images))
        params = capability.validate(request.params)
        generator = self.generator(resolve_seed(request.seed))
        with torch.inference_mode():
            codes = self.encode(images[0])[0] if images else None
        question = self.tokenizer(chat_text(request.messages), add_special_tokens=False)["input_ids"]
        prompt = mmu_row(None if codes is None else codes + self.ids.offset, question, self.ids).to(self.device)
        tokens = mmu_tokens(
            self.model, prompt, self.ids, max_new_tokens=params["max_new_tokens"],
            temperature=params["temperature"], top_p=params.get("top_p", 1.0), generator=generator,
        )
        yield from stream_text(tokens, self.tokenizer, control, params["max_new_tokens"])

    # -- generation and inpainting ---------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        params = self.spec.capability("generate").validate(request.params)
        codes = torch.full((params["num_images"], self.ids.num_image_tokens), -1, dtype=torch.long)
        return self._images("generate", request.prompt, codes, params, request.seed, control)

    def edit(self, request: EditRequest, control: RunControl) -> ImageResult:
        capability = self.spec.capability("edit")
        capability.check_images(len(request.images))
        params = capability.validate(request.params)
        with torch.inference_mode():
            codes = self.encode(request.images[0])[0]
        region = self.region(request.images[1] if len(request.images) > 1 else None, params)
        codes = torch.where(region.to(codes.device), -1, codes)
        codes = codes[None].repeat(params["num_images"], 1)
        return self._images("edit", request.instruction, codes, params, request.seed, control)

    def region(self, mask_image, params: dict) -> torch.Tensor:
        """Token positions to regenerate: the mask image's white part, or the box."""
        from umm.ports.magvitv2.images import to_mask

        if mask_image is not None:
            region = to_mask(mask_image, self.resolution, self.grid)
        else:
            grid = self.grid
            left, right = (round(params[k] * grid) for k in ("box_left", "box_right"))
            top, bottom = (round(params[k] * grid) for k in ("box_top", "box_bottom"))
            region = torch.zeros(grid, grid, dtype=torch.bool)
            region[top:bottom, left:right] = True
            region = region.flatten()
        if not bool(region.any()):
            raise InputError(
                f"The region to change covers no image token (the image is a {self.grid}×{self.grid} token grid): "
                "paint a larger white area in the mask, or widen the box."
            )
        return region

    def _images(self, task: str, prompt: str, codes: torch.Tensor, params: dict, seed: int | None,
                control: RunControl) -> ImageResult:
        from umm.ports.showo.generate import t2i_generate

        seed = resolve_seed(seed)
        text = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        steps = params["steps"]
        started = time.perf_counter()
        with torch.inference_mode():
            out = t2i_generate(
                self.model, self.ids, [list(text)] * codes.shape[0], codes.to(self.device), steps=steps,
                guidance_scale=params["guidance_scale"], temperature=params["temperature"],
                generator=self.generator(seed), on_step=lambda t: control.step(t.step + 1, steps, "steps"),
            )
            control.check()
            sampled = time.perf_counter()
            images = self.decode(out)
        info = self.run_info(task, seed, params, prompt=prompt)
        info.timings = {"sample_s": sampled - started, "decode_s": time.perf_counter() - sampled}
        return ImageResult(images=images, info=info)

    # -- image tokens ----------------------------------------------------------------------
    def encode(self, image) -> torch.Tensor:
        from umm.ports.magvitv2.images import to_pixels

        pixels = to_pixels(image, self.resolution).to(self.device, self.vq.dtype)
        return self.vq.encode(pixels)[1]

    def decode(self, codes: torch.Tensor) -> list:
        from umm.ports.magvitv2.images import to_images

        codes = codes.clamp(0, self.ids.codebook_size - 1)
        return [to_images(self.vq.decode_indices(row[None], (self.grid, self.grid)))[0] for row in codes]

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        from umm.ports.showo.tiny import build_tiny_showo

        build_tiny_showo(Path(directory))


def chat_text(messages: list[Message]) -> str:
    """Upstream's single-turn template ``"USER: \\n{q} ASSISTANT:"``, earlier turns kept in the same form."""
    parts = []
    for message in messages:
        if message.role == "user":
            parts.append(f"USER: \n{message.text} ASSISTANT:")
        else:
            parts.append(f" {message.text}")
    return "".join(parts)


def stream_text(
    tokens: Iterator[tuple[int, torch.Tensor]], tokenizer, control: RunControl, total: int
) -> Iterator[str]:
    """Decoded text as it grows; ids past the text vocabulary (special / image ids) are dropped."""
    from umm.sampling import detokenize

    yield from detokenize((token for token, _ in tokens), tokenizer, control, total)
