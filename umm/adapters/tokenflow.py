"""TokenFlow 7B text-to-image: next-scale (VAR-style) prediction over a dual-codebook tokenizer.

Two repos, as upstream's ``t2i/scripts/run_t2i.sh`` reads them:

* ``ByteFlow-AI/TokenFlow-t2i`` (main): a Llama-2-7B ``llava_llama`` checkpoint (safetensors shards) with
  its tokenizer (Llama vocabulary + ``[PAD]`` + one ``<vq_token_i>`` per code). The port in
  :mod:`umm.ports.tokenflow` builds it from ``config.json`` and loads the shards under their own names.
* component ``tokenflow`` (``ByteFlow-AI/TokenFlow``): ``tokenflow_clipb_32k_enhanced.pt``, a pickle.
  ``python -m umm convert tokenflow-7b`` writes its safetensors copy once; only that copy is read, and
  only the codebooks and the pixel decoder (sizes from the tensor shapes).

A prompt becomes BOS + text, left-padded to 128 tokens, then ``<img>``; the negative prompt fills the
unconditional rows. The image is sampled scale by scale (1×1 … 16×16, 817 tokens) with a CFG weight that
ramps with the scale, top-k / top-p and optional refinement loops (upstream's loop strategies), drawing
from an explicit CPU generator; each scale runs once against a KV cache of the earlier scales.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from umm.adapters.base import Adapter, load_errors, resolve_seed
from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import InputError, ModelLoadError
from umm.types import GenerateRequest, ImageResult

COMPONENT = "tokenflow"
TOKENIZER_PICKLE = "tokenflow_clipb_32k_enhanced.pt"
# run_llava_samples.py: the negative prompt of every unconditional row
NEGATIVE_PROMPT = (
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst "
    "quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry."
)
IMAGE_START = "<img>"  # upstream constants.IMAGE_START_TOKEN_GEN
PAD_TOKEN = "[PAD]"  # upstream reinit_image_token_start_end
VQ_TOKEN = "<vq_token_%d>"
REPO_FILES = [
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer*",
    "special_tokens_map.json", "added_tokens.json",
]
# TokenFlow(teacher="clipb_224", infer_interpolate=True).scale_rq_layers: not in any file of either repo
OFFICIAL_SCALES = (1, 2, 4, 6, 8, 10, 12, 14, 16)


class TokenFlowAdapter(Adapter):
    family = "tokenflow"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.lm = None
        self.vq = None
        self.tokenizer = None
        self.layout = None

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.spec.options.get("scales", OFFICIAL_SCALES))

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from umm.ports.tokenflow import load_llm, load_pixel_decoder

        device = torch.device(device)
        with load_errors(self.spec):
            root = self.snapshot_dir(allow_patterns=REPO_FILES)
            vq_path = self.converted(TOKENIZER_PICKLE, COMPONENT)
            self.tokenizer = load_tokenizer(root, self.spec)
            config = json.loads((root / "config.json").read_text(encoding="utf-8"))
            self.layout = token_layout(self.tokenizer, int(config["vq_codebook_size"]))
            self.lm = load_llm(root, self.scales, dtype, device)
            self.vq = load_pixel_decoder(vq_path, dtype, device)
            if self.vq.sizes["codebook_size"] != int(config["vq_codebook_size"]):
                raise ModelLoadError(
                    f"{self.spec.name}: the tokenizer has {self.vq.sizes['codebook_size']} codes, the LLM "
                    f"{config['vq_codebook_size']}; the two repos do not belong together."
                )
            if self.vq.code_dim != self.lm.config.mm_hidden_size:
                raise ModelLoadError(
                    f"{self.spec.name}: tokenizer codes are {self.vq.code_dim}-d, the LLM expects "
                    f"{self.lm.config.mm_hidden_size}-d; the two repos do not belong together."
                )
        self.device, self.dtype = device, dtype

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.lm, self.vq) if m is not None]

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("tokenizer", "layout")

    # -- generation ------------------------------------------------------------------------
    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        from umm.ports.tokenflow import LOOP_STRATEGIES, generate_codes, prefix_ids, to_uint8

        params = self.spec.capability("generate").validate(request.params)
        seed = resolve_seed(request.seed)
        negative = request.negative_prompt or NEGATIVE_PROMPT
        strategy = LOOP_STRATEGIES[int(params["loop_strategy"])]
        count = int(params["num_images"])
        cond = prefix_ids(self.tokenizer.encode(request.prompt), self.layout)
        uncond = prefix_ids(self.tokenizer.encode(negative), self.layout)
        limit = int(self.lm.config.max_position_embeddings)
        if len(cond) - 1 + sum(s * s for s in self.scales) > limit:
            raise InputError(f"The prompt and the image tokens do not fit the model's {limit} positions.")
        rows = torch.tensor([cond] * count + [uncond] * count, device=self.device)
        total = len(self.scales)
        started = time.perf_counter()
        codes = generate_codes(
            self.lm, self.vq, rows, self.layout,
            cfg=float(params["guidance_scale"]), top_k=strategy["top_k"], top_p=strategy["top_p"],
            generator=torch.Generator("cpu").manual_seed(seed),  # upstream draws on a seeded generator
            use_cache=bool(self.spec.options.get("kv_cache", True)),
            on_step=lambda k, _: control.step(k + 1, total, "scales"),  # before scale k: the cancel point
        )
        sampled = time.perf_counter()
        with torch.inference_mode():
            pixels = to_uint8(self.vq.decode(codes, self.scales)).cpu().numpy()
        from PIL import Image

        images = [Image.fromarray(p, mode="RGB") for p in pixels]
        info = self.run_info("generate", seed, params, prompt=request.prompt, negative_prompt=negative)
        info.timings = {"sample_s": sampled - started, "decode_s": time.perf_counter() - sampled}
        return ImageResult(images=images, info=info)

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        from umm.ports.tokenflow.tiny import write_tiny

        write_tiny(directory, tuple(spec.options.get("scales", OFFICIAL_SCALES)), COMPONENT)


def load_tokenizer(root: Path, spec: ModelSpec):
    """The checkpoint's tokenizer; the official repo ships only a SentencePiece ``tokenizer.model``."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(root)
    except (ImportError, ValueError, OSError) as err:
        text = str(err).lower()
        if "sentencepiece" in text or "protobuf" in text:
            raise ModelLoadError(
                f"{spec.name}'s tokenizer is a SentencePiece model; reading it needs the sentencepiece and "
                "protobuf packages (`pip install sentencepiece protobuf`)."
            ) from err
        raise


def token_layout(tokenizer, codebook_size: int):
    """Ids upstream looks up by name: ``[PAD]``, BOS, ``<vq_token_0>`` …, and the pieces of ``<img>``."""
    from umm.ports.tokenflow import TokenLayout

    unk = tokenizer.unk_token_id
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in (PAD_TOKEN, VQ_TOKEN % 0)}
    last = tokenizer.convert_tokens_to_ids(VQ_TOKEN % (codebook_size - 1))
    missing = [name for name, i in ids.items() if i is None or i == unk]
    if missing or last - ids[VQ_TOKEN % 0] != codebook_size - 1:
        raise ModelLoadError(f"the tokenizer lacks {missing or 'consecutive <vq_token_i> entries'}")
    return TokenLayout(
        image_token_start=ids[VQ_TOKEN % 0], pad_token_id=ids[PAD_TOKEN], bos_token_id=tokenizer.bos_token_id,
        img_ids=tuple(tokenizer.encode(IMAGE_START, add_special_tokens=False)),
    )
