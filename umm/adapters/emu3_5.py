"""Emu3.5 (BAAI): one 34B next-token predictor over text and IBQ visual tokens.

Two checkpoints share the code and the vision tokenizer repo: ``BAAI/Emu3.5`` (chat) and
``BAAI/Emu3.5-Image`` (text-to-image and any-to-image editing). The pieces (:mod:`umm.ports.emu3_5`):

* the LLM is transformers' ``Qwen3ForCausalLM``, configured from the checkpoint's ``Emu3`` config;
* ``BAAI/Emu3.5-VisionTokenizer`` is an IBQ VQ (16x down); its official ``model.ckpt`` is a pickle,
  so ``python -m umm convert <id>`` turns it into safetensors once and only that is loaded;
* the text tokenizer is tiktoken over ``emu3.tiktoken`` + ``emu3_vision_tokens.txt``;
* sampling is upstream's: text / image settings, forced image headers and rows, log-softmax CFG
  against a text-free unconditional context, one draw per token from the request's generator.

Images go in as blocks ``<|image start|>h*w<|image token|>`` + rows of visual tokens, and come out
the same way; generation stops at ``<|image end|>``. On a card smaller than the weights (~70 GB),
``options.cpu_offload: auto`` loads the LLM with ``device_map="auto"`` (layers that do not fit stay in
RAM and stream over PCIe every token: very slow); ``true`` / ``false`` force it either way.
"""

from __future__ import annotations

import codecs
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import InputError, ModelLoadError
from umm.types import EditRequest, GenerateRequest, ImageResult, UnderstandRequest

log = logging.getLogger(__name__)

VISION = "vision_tokenizer"  # the catalog component holding BAAI/Emu3.5-VisionTokenizer
REPO_FILES = ["*.json", "*.safetensors", "emu3.tiktoken", "emu3_vision_tokens.txt"]
# Upstream configs/example_config_t2i.py: h*w token sizes at image_area 1024^2; "4:3" is its "default".
ASPECT_RATIOS = {
    "4:3": (55, 73), "21:9": (41, 97), "16:9": (47, 85), "3:2": (52, 78), "1:1": (64, 64),
    "3:4": (73, 55), "9:16": (85, 47), "2:3": (78, 52),
}
PRESET_AREA = 1048576
AUTO_MAX_NEW_TOKENS = 5120  # upstream max_new_tokens; only "auto" size can run into it


class Emu35Adapter(Adapter):
    family = "emu3_5"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.llm = None
        self.vq = None
        self.tokenizer = None
        self.offloaded = False

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from umm.ports.emu3_5 import Emu35Tokenizer, load_llm
        from umm.ports.emu3_5.ibq import load_ibq

        device = torch.device(device)
        offload = self._offload(device)
        with load_errors(self.spec):
            root = self.snapshot_dir(allow_patterns=REPO_FILES)
            self.tokenizer = Emu35Tokenizer.from_dir(self._tokenizer_dir(root))
            self.llm = load_llm(root, dtype=dtype, device_map="auto" if offload else str(device))
            vision = self.snapshot_dir(VISION, ["config.yaml", "model.ckpt", "*.safetensors"])
            # upstream runs the IBQ in fp32
            self.vq = load_ibq(vision / "config.yaml", self.converted("model.ckpt", VISION), device=device)
        if self.tokenizer.n_codes != self.vq.n_embed or len(self.tokenizer) > self.llm.config.vocab_size:
            raise ModelLoadError(
                f"{self.spec.name}: tokenizer ({len(self.tokenizer)} ids, {self.tokenizer.n_codes} visual), "
                f"LLM ({self.llm.config.vocab_size}) and IBQ ({self.vq.n_embed} codes) do not fit together."
            )
        self.offloaded = offload
        self.device, self.dtype = device, dtype

    def _offload(self, device: torch.device) -> bool:
        """``options.cpu_offload``: true, false, or "auto" = when the card is smaller than the weights (+10 %)."""
        choice = self.spec.options.get("cpu_offload", "auto")
        if device.type != "cuda" or choice is False:
            return False
        if choice is True:
            return True
        total = torch.cuda.get_device_properties(device).total_memory
        if total < 1.1 * self.spec.weight_bytes:
            log.warning("%s: %.0f GB card, %.0f GB of weights: offloading layers to RAM (device_map='auto'; slow)",
                        self.spec.id, total / 1e9, self.spec.weight_bytes / 1e9)
            return True
        return False

    def _tokenizer_dir(self, root: Path) -> Path:
        """Where emu3.tiktoken is: the main repo, or ``options.tokenizer_dir``.

        Upstream loads these files from its GitHub repo (src/tokenizer_emu3_ibq); point
        ``tokenizer_dir`` there when a hub snapshot does not carry them.
        """
        folder = Path(self.spec.options.get("tokenizer_dir") or root)
        if not (folder / "emu3.tiktoken").is_file():
            raise ModelLoadError(
                f"{self.spec.name}: emu3.tiktoken / emu3_vision_tokens.txt not found in {folder}. They ship in "
                "github.com/baaivision/Emu3.5 under src/tokenizer_emu3_ibq; set options.tokenizer_dir to that folder."
            )
        return folder

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.llm, self.vq) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer",)

    def to(self, device: torch.device) -> None:
        if self.offloaded:  # accelerate placed the layers; they stay where device_map put them
            self.device = torch.device(device)
            return
        super().to(device)

    # -- helpers ---------------------------------------------------------------------------
    def _settings(self, params: dict[str, Any], prefix: str = ""):
        from umm.ports.emu3_5 import Settings

        return Settings(
            float(params.get(f"{prefix}temperature", 1.0)), int(params.get(f"{prefix}top_k", 0)),
            float(params.get(f"{prefix}top_p", 1.0)),
        )

    @torch.inference_mode()
    def image_block(self, image, area: int) -> str:
        """An input image as upstream's ``build_image`` writes it: smart_resize, IBQ codes, block string."""
        from umm.ports.emu3_5.ibq import smart_resize, to_pixels

        pixels = to_pixels(smart_resize(image.convert("RGB"), area)).to(self.vq.quant_conv.weight.device)
        codes = self.vq.encode(pixels)[0].cpu()
        return self.tokenizer.image_string(codes)

    @torch.inference_mode()
    def decode_codes(self, codes: torch.Tensor):
        from umm.ports.emu3_5.ibq import to_image

        return to_image(self.vq.decode(codes[None].to(self.vq.quant_conv.weight.device))[0])

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        bos = self.tokenizer.ids["BOS"]
        return ids if ids[:1] == [bos] else [bos, *ids]  # inference.py prepends BOS when missing

    # -- understanding ---------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        from umm.ports.emu3_5.prompts import chat_prompt
        from umm.ports.emu3_5.sampler import iter_sample

        params = self.spec.capability("understand").validate(request.params)
        seed = resolve_seed(request.seed)
        turns = [
            (m.role, m.text, [self.image_block(im, int(params["image_area"])) for im in m.images])
            for m in request.messages
        ]
        ids = self._encode(chat_prompt(turns))
        room = self.llm.config.max_position_embeddings - len(ids)
        if room < 1:
            raise InputError(f"The conversation ({len(ids)} tokens) does not fit {self.spec.name}'s context.")
        special = self.tokenizer.special["<|endoftext|>"]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        tokens = iter_sample(
            self.llm, self.tokenizer, ids, [], guidance_scale=1.0, text=self._settings(params),
            image=self._settings(params), max_new_tokens=min(params["max_new_tokens"], room),
            generator=self.generator(seed),
            allow_images=False, step=lambda done, total: control.step(done, total, "tokens"),
            static_cache=self.device.type == "cuda" and not self.offloaded,
        )
        for token in tokens:
            if token < special:
                chunk = decoder.decode(self.tokenizer.decode_bytes([token]))
                if chunk:
                    yield chunk
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    # -- generation ------------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        from umm.ports.emu3_5.prompts import t2i_prompts

        params = self.spec.capability("generate").validate(request.params)
        cond, uncond = t2i_prompts(request.prompt)
        return self._images("generate", request, params, cond, uncond, grid_hw(params), control)

    def edit(self, request: EditRequest, control: RunControl) -> ImageResult:
        from umm.ports.emu3_5.prompts import x2i_prompts

        cap = self.spec.capability("edit")
        params = cap.validate(request.params)
        cap.check_images(len(request.images))
        started = time.perf_counter()
        blocks = [self.image_block(im, int(params["image_area"])) for im in request.images]
        encode_s = time.perf_counter() - started
        cond, uncond = x2i_prompts(request.instruction, blocks)
        # the output takes the last reference's size (read from the unconditional prompt, as upstream)
        result = self._images("edit", request, params, cond, uncond, None, control, prompt=request.instruction)
        result.info.timings["encode_s"] = encode_s
        return result

    def _images(self, task, request, params, cond, uncond, hw, control, prompt=None) -> ImageResult:
        from umm.ports.emu3_5.sampler import iter_sample, parse_hw

        seed = resolve_seed(request.seed)
        generator = self.generator(seed)
        cond_ids, uncond_ids = self._encode(cond), self._encode(uncond)
        tok = self.tokenizer
        known = hw or parse_hw(uncond_ids, tok.ids["BOI"], tok.ids["IMG"], {v: k for k, v in tok.digit_ids.items()})
        n = int(params.get("num_images", 1))
        per_image = AUTO_MAX_NEW_TOKENS if known is None else 2 + len(f"{known[0]}*{known[1]}") + known[0] * (
            known[1] + 1
        )
        limit = self.llm.config.max_position_embeddings - len(cond_ids)
        if known is not None and per_image > limit:
            raise InputError(f"A {known[0]}x{known[1]}-token image does not fit {self.spec.name}'s context.")
        images, sample_s, decode_s = [], 0.0, 0.0
        settings = self._settings(params, "image_")
        for i in range(n):
            started = time.perf_counter()
            out = list(iter_sample(
                self.llm, tok, cond_ids, uncond_ids, guidance_scale=float(params["guidance_scale"]),
                text=settings, image=settings, max_new_tokens=min(per_image, limit), generator=generator,
                target_hw=hw, start_image=True, stop_at_image_end=True, total=per_image * n,
                static_cache=self.device.type == "cuda" and not self.offloaded, batched=True,
                step=lambda done, total, i=i: control.step(i * per_image + done, total, "tokens"),
            ))
            control.check()
            codes = image_codes(out, tok)
            sampled = time.perf_counter()
            images.append(self.decode_codes(codes))
            sample_s += sampled - started
            decode_s += time.perf_counter() - sampled
        info = self.run_info(task, seed, params, prompt=prompt if prompt is not None else request.prompt)
        info.timings = {"sample_s": sample_s, "decode_s": decode_s}
        return ImageResult(images=images, info=info)

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        from umm.ports.emu3_5.tiny import build_tiny

        build_tiny(Path(directory), Path(directory) / VISION)


def grid_hw(params: dict[str, Any]) -> tuple[int, int] | None:
    """Token grid (h, w) for the aspect ratio at the chosen area; None lets the model pick ("auto")."""
    ratio = str(params.get("aspect_ratio", "4:3"))
    if ratio == "auto":
        return None
    h, w = ASPECT_RATIOS[ratio]
    scale = math.sqrt(int(params.get("image_area", PRESET_AREA)) / PRESET_AREA)
    return max(1, round(h * scale)), max(1, round(w * scale))


def image_codes(ids: list[int], tokenizer) -> torch.Tensor:
    """The [h, w] codes of the image block in ``ids`` (rows split at end-of-line tokens)."""
    t = tokenizer.ids
    if t["EOI"] not in ids or t["IMG"] not in ids:
        raise InputError(
            "The model did not finish an image within the token budget; try a fixed aspect ratio instead of auto."
        )
    body = ids[ids.index(t["IMG"]) + 1 : ids.index(t["EOI"])]
    rows, row = [], []
    for token in body:
        if token == t["EOL"]:
            rows.append(row)
            row = []
        else:
            row.append(token - tokenizer.bov)
    rows.append(row)
    return torch.tensor(rows, dtype=torch.long)
