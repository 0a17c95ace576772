"""Janus 1.3B (the original Janus, not Janus-Pro) from its original checkpoint layout.

``deepseek-ai/Janus-1.3B`` was never converted to transformers' native classes, but its architecture is
the one ``JanusForConditionalGeneration`` implements (Llama text model, SigLIP-L vision tower, VQ-16
image tokenizer, two MLP aligners and a generation head). So this adapter reads the repo as published
-- its own ``config.json`` (``multi_modality``), one ``model.safetensors`` in the original parameter
naming, the tokenizer files and ``preprocessor_config.json`` -- builds a ``JanusConfig`` and a
``JanusProcessor`` from them and renames the weights at load time (:func:`original_to_hf`).
Everything after loading (chat, image generation, decoding) is :class:`JanusAdapter`'s.

Tiny test checkpoints are written in the original naming and layout too, so they load through the same
renaming code as the real weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from umm.adapters.base import load_errors
from umm.adapters.janus import JanusAdapter
from umm.catalog import ModelSpec

# Files of the original repo that loading reads (weights are one safetensors file).
REPO_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "processor_config.json",
)
IMAGE_TOKENS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}

# Sizes the original code derives from names rather than config values (janus/models/siglip_vit.py,
# janus/models/vq_model.py); a config may override them (tiny checkpoints do).
SIGLIP_MODELS = {
    "siglip_large_patch16_384": {"width": 1024, "layers": 24, "heads": 16, "patch_size": 16, "mlp_ratio": 4.0},
}
_VQ_OVERRIDES = ("ch", "encoder_ch_mult", "z_channels", "num_res_blocks")
VQ_MODELS = {
    "VQ-16": {"ch": 128, "encoder_ch_mult": [1, 1, 2, 2, 4], "z_channels": 256, "num_res_blocks": 2},
}

# Janus-1.3B's conversation format ("deepseek" sft format with an empty system prompt):
# "<|User|>: <image_placeholder>\n{text}\n\n<|Assistant|>: {reply}<eos>" ... ending in "<|Assistant|>:".
# Newlines are jinja expressions: transformers renders templates with trim_blocks, which would eat a
# literal newline right after a block tag.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|User|>: {% else %}<|Assistant|>: {% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image_placeholder>\\n' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
    "{% if message['role'] == 'user' %}{{ '\\n\\n' }}{% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)


# Original tensors the loader drops on purpose.
_DROPPED = (
    re.compile(r"^vision_model\.vision_tower\.attn_pool\."),  # SigLIP pooling head; Janus uses patch tokens
    re.compile(r"^gen_vision_model\.quantize\.codebook_used$"),  # training statistic
)


class JanusV1Adapter(JanusAdapter):
    family = "janus-v1"

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        from accelerate import init_empty_weights
        from safetensors.torch import load_file
        from transformers import GenerationConfig, JanusForConditionalGeneration

        with load_errors(self.spec):
            root = self._repo_dir()
            weights = root / "model.safetensors"
            if not weights.is_file():
                raise FileNotFoundError(f"no safetensors weights found in {root} (expected model.safetensors)")
            original = json.loads((root / "config.json").read_text(encoding="utf-8"))
            processor = build_processor(root, original)
            tokenizer = processor.tokenizer
            config = janus_config(original, tokenizer)
            with init_empty_weights(include_buffers=False):  # parameters on "meta"; buffers real
                model = JanusForConditionalGeneration(config)
            state = {k: v.to(dtype) for k, v in original_to_hf(load_file(weights)).items()}
            model.load_state_dict(state, strict=True, assign=True)
            model.generation_config = GenerationConfig(
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["boi_token"])},
            )
            self.model = model.to(device).eval()
            self.processor = processor
        self.device, self.dtype = torch.device(device), dtype

    checkpoint_files = tuple(f for f in REPO_FILES if not f.endswith(".safetensors"))
    checkpoint_ignored = _DROPPED

    @classmethod
    def expected_tensors(cls, folders: dict) -> dict[str, dict[str, list[int]]]:
        """The native model built on meta from the original config, in the original parameter naming."""
        from accelerate import init_empty_weights
        from transformers import JanusForConditionalGeneration

        root = folders[None]
        original = json.loads((root / "config.json").read_text(encoding="utf-8"))
        with init_empty_weights():
            model = JanusForConditionalGeneration(janus_config(original, build_processor(root, original).tokenizer))
        return {"": {k: list(v.shape) for k, v in hf_to_original(model.state_dict()).items()}}

    def _repo_dir(self) -> Path:
        """The local directory holding the repo's files (the hub cache snapshot for hub repos)."""
        return self.snapshot_dir(allow_patterns=list(REPO_FILES))

    # -- tiny checkpoint -------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        """A tiny random Janus written exactly like the original repo: its config, naming and files."""
        from safetensors.torch import save_file
        from transformers import JanusForConditionalGeneration

        from umm.tiny import train_tokenizer

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        specials = {
            "bos_token": "<｜begin▁of▁sentence｜>",
            "eos_token": "<｜end▁of▁sentence｜>",
            "pad_token": "<｜▁pad▁｜>",
        }
        tokenizer = train_tokenizer([*specials.values(), *IMAGE_TOKENS.values()], **specials)
        # No BOS post-processor here, like a tokenizer.json whose BOS comes from ``add_bos_token``:
        # loading must add it (see ``build_processor``).
        tokenizer.save_pretrained(directory)
        config_json = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        config_json.update(tokenizer_class="LlamaTokenizerFast", add_bos_token=True, model_max_length=16384)
        (directory / "tokenizer_config.json").write_text(json.dumps(config_json, indent=2), encoding="utf-8")
        (directory / "special_tokens_map.json").write_text(
            json.dumps({**specials, "additional_special_tokens": list(IMAGE_TOKENS.values())}, indent=2),
            encoding="utf-8",
        )
        image_size, hidden = 64, 64
        original = {
            "architectures": ["MultiModalityCausalLM"],
            "model_type": "multi_modality",
            "torch_dtype": "float32",
            "language_config": {
                "model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                "max_position_embeddings": 512, "torch_dtype": "float32",
            },
            "vision_config": {
                "cls": "CLIPVisionTower", "model_type": "vision",
                "params": {
                    "image_size": image_size, "model_name": "siglip_tiny_patch16_64", "select_feature": "same",
                    "select_layer": -1, "width": 32, "layers": 1, "heads": 2, "patch_size": 16, "mlp_ratio": 4.0,
                },
            },
            "aligner_config": {
                "cls": "MlpProjector", "model_type": "aligner",
                "params": {"depth": 2, "input_dim": 32, "n_embed": hidden, "projector_type": "mlp_gelu"},
            },
            "gen_vision_config": {
                "cls": "VQ-16", "model_type": "gen_vision",
                "params": {
                    "image_token_size": 64, "n_embed": 8,
                    "ch": 32, "encoder_ch_mult": [1, 1, 1, 1, 1], "z_channels": 32, "num_res_blocks": 1,
                },
            },
            "gen_aligner_config": {
                "cls": "MlpProjector", "model_type": "gen_aligner",
                "params": {"depth": 2, "input_dim": 8, "n_embed": hidden, "projector_type": "mlp_gelu"},
            },
            "gen_head_config": {
                "cls": "vision_head", "model_type": "gen_head",
                "params": {"image_token_embed": hidden, "image_token_size": 64, "n_embed": hidden},
            },
        }
        (directory / "config.json").write_text(json.dumps(original, indent=2), encoding="utf-8")
        (directory / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "image_processor_type": "VLMImageProcessor", "image_size": image_size, "min_size": 14,
                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                    "rescale_factor": 1 / 255, "do_normalize": True,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        (directory / "processor_config.json").write_text(
            json.dumps(
                {
                    "processor_class": "VLChatProcessor", "image_tag": IMAGE_TOKENS["image_token"],
                    "num_image_tokens": (image_size // 16) ** 2, "add_special_token": False,
                    "sft_format": "deepseek", "mask_prompt": True, "ignore_id": -100,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        torch.manual_seed(0)
        model = JanusForConditionalGeneration(janus_config(original, tokenizer)).eval()
        state = hf_to_original(model.state_dict())
        # Tensors the original checkpoint carries that inference does not use (dropped on load).
        width = original["vision_config"]["params"]["width"]
        state["vision_model.vision_tower.attn_pool.latent"] = torch.randn(1, 1, width)
        state["vision_model.vision_tower.attn_pool.q.weight"] = torch.randn(width, width)
        state["vision_model.vision_tower.attn_pool.kv.weight"] = torch.randn(2 * width, width)
        state["gen_vision_model.quantize.codebook_used"] = torch.zeros(65536)
        state = {k: v.contiguous() for k, v in state.items()}
        save_file(state, directory / "model.safetensors", metadata={"format": "pt"})


def build_processor(root: Path, original: dict[str, Any]):
    """``JanusProcessor`` from the original repo's tokenizer and preprocessor files."""
    from transformers import JanusImageProcessorPil, JanusProcessor, PreTrainedTokenizerFast
    from transformers.utils import is_torchvision_available

    tokenizer = PreTrainedTokenizerFast.from_pretrained(root, extra_special_tokens=IMAGE_TOKENS)
    ensure_bos(tokenizer)
    kwargs = image_processor_kwargs(root, original["vision_config"]["params"].get("image_size", 384))
    size = kwargs["size"]["height"]
    if is_torchvision_available():
        from transformers import JanusImageProcessor as ImageProcessor
    else:
        ImageProcessor = JanusImageProcessorPil
    patch = _vision_sizes(original)["patch_size"]
    return JanusProcessor(
        ImageProcessor(**kwargs),
        tokenizer,
        chat_template=CHAT_TEMPLATE,
        use_default_system_prompt=False,
        num_image_tokens=(size // patch) ** 2,
    )


def image_processor_kwargs(root: Path, image_size: int) -> dict[str, Any]:
    """Janus image processor settings from an original repo's ``preprocessor_config.json`` (the original
    ``VLMImageProcessor``: resize the long side, pad square with grey, scale to [-1, 1]); Janus 1.3B and
    JanusFlow ship the same file."""
    path = Path(root) / "preprocessor_config.json"
    pre: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    size = int(pre.get("image_size", image_size))
    kwargs: dict[str, Any] = {
        "size": {"height": size, "width": size},
        "image_mean": pre.get("image_mean", [0.5, 0.5, 0.5]),
        "image_std": pre.get("image_std", [0.5, 0.5, 0.5]),
        "do_normalize": pre.get("do_normalize", True),
    }
    kwargs.update({key: pre[key] for key in ("min_size", "rescale_factor") if key in pre})
    return kwargs


def ensure_bos(tokenizer) -> None:
    """Make encoding start with BOS, as the original processor's ``tokenizer.encode`` did."""
    from tokenizers.processors import TemplateProcessing

    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    if tokenizer("a")["input_ids"][:1] == [bos_id]:
        return
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )


def _vision_sizes(original: dict[str, Any]) -> dict[str, Any]:
    return siglip_sizes(original["vision_config"]["params"])


def siglip_sizes(params: dict[str, Any], models: dict[str, dict] | None = None) -> dict[str, Any]:
    """SigLIP tower sizes from a ``CLIPVisionTower`` params block: the name table, then explicit overrides.

    ``select_layer`` is applied as the original ``create_siglip_vit`` does (it builds only the kept blocks).
    ``models`` adds entries to :data:`SIGLIP_MODELS` (test towers under names the table lacks).
    """
    table = {**SIGLIP_MODELS, **(models or {})}
    sizes = dict(table.get(params.get("model_name", ""), {}))
    sizes.update({k: params[k] for k in ("width", "layers", "heads", "patch_size", "mlp_ratio") if k in params})
    missing = {"width", "layers", "heads", "patch_size", "mlp_ratio"} - set(sizes)
    if missing:
        raise ValueError(f"unknown vision tower {params.get('model_name')!r} (no sizes for {sorted(missing)})")
    select = int(params.get("select_layer", -1))
    layers = sizes["layers"]
    sizes["layers"] = min(layers, layers + select + 1) if select <= 0 else min(layers, select)
    return sizes


def janus_config(original: dict[str, Any], tokenizer):
    """A transformers ``JanusConfig`` from the original ``multi_modality`` config.json."""
    from transformers import JanusConfig

    lang = original["language_config"]
    text_config = {
        key: lang[key]
        for key in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta",
        )
        if key in lang
    }
    text_config.update(
        model_type="llama",
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    vision = _vision_sizes(original)
    image_size = int(original["vision_config"]["params"].get("image_size", 384))
    aligner = original["aligner_config"]["params"]
    gen_vision = original["gen_vision_config"]
    vq = dict(VQ_MODELS.get(gen_vision.get("cls", ""), {}))
    vq.update({k: v for k, v in gen_vision["params"].items() if k in _VQ_OVERRIDES})
    gen_aligner = original["gen_aligner_config"]["params"]
    gen_head = original["gen_head_config"]["params"]
    return JanusConfig(
        text_config=text_config,
        vision_config={
            "hidden_size": vision["width"],
            "num_hidden_layers": vision["layers"],
            "num_attention_heads": vision["heads"],
            "image_size": image_size,
            "patch_size": vision["patch_size"],
            "mlp_ratio": vision["mlp_ratio"],
            "projection_dim": aligner["n_embed"],
            "depth": aligner.get("depth", 2),
            "num_image_tokens": (image_size // vision["patch_size"]) ** 2,
        },
        vq_config={
            "embed_dim": gen_vision["params"].get("n_embed", 8),
            "num_embeddings": gen_vision["params"].get("image_token_size", 16384),
            "base_channels": vq["ch"],
            "channel_multiplier": vq["encoder_ch_mult"],
            "latent_channels": vq["z_channels"],
            "num_res_blocks": vq["num_res_blocks"],
            "projection_dim": gen_aligner["n_embed"],
            "num_hidden_layers": gen_aligner.get("depth", 2),
            "image_token_embed_dim": gen_head["image_token_embed"],
        },
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["image_token"]),
        tie_word_embeddings=False,
    )


# -- weight names ----------------------------------------------------------------------------
# Original (janus/models/modeling_vlm.py, siglip_vit.py, vq_model.py, projector.py) -> transformers.
# Each rule: (pattern on the original key, replacement); a key no rule matches is an error.
_PREFIXES = (
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^vision_model\.vision_tower\.pos_embed$", "model.vision_model.embeddings.position_embedding.weight"),
    (r"^vision_model\.vision_tower\.patch_embed\.proj\.", "model.vision_model.embeddings.patch_embedding."),
    (r"^vision_model\.vision_tower\.norm\.", "model.vision_model.post_layernorm."),
    (r"^vision_model\.vision_tower\.blocks\.(\d+)\.", r"model.vision_model.encoder.layers.\1."),
    (r"^gen_vision_model\.", "model.vqmodel."),
    (r"^gen_head\.output_mlp_projector\.", "model.generation_head.proj_out."),
    (r"^gen_head\.vision_head\.", "model.generation_head.vision_head."),
    (r"^gen_embed\.", "model.generation_embeddings."),
    (r"^gen_aligner\.layers\.(\d+)\.", "model.generation_aligner.layers.\\1."),
    (r"^aligner\.layers\.(\d+)\.", "model.aligner.layers.\\1."),
)
_VISION_BLOCK = (
    (r"\.norm1\.", ".layer_norm1."),
    (r"\.norm2\.", ".layer_norm2."),
    (r"\.attn\.proj\.", ".self_attn.projection_layer."),
)
_VQ = (
    (r"\.encoder\.conv_blocks\.", ".encoder.down."),
    (r"\.decoder\.conv_blocks\.", ".decoder.up."),
    (r"\.res\.", ".block."),
    (r"\.mid\.0\.", ".mid.block_1."),
    (r"\.mid\.1\.", ".mid.attn_1."),
    (r"\.mid\.2\.", ".mid.block_2."),
)


def _aligner_layer(match: re.Match) -> str:
    """``nn.Sequential(Linear, GELU, Linear, ...)`` index -> ``fc1`` / ``hidden_layers.i``."""
    index = int(match.group(2))
    if index % 2:
        raise KeyError(f"aligner layer {index} is an activation and has no weights")
    return f"{match.group(1)}.fc1." if index == 0 else f"{match.group(1)}.hidden_layers.{index // 2 - 1}."


def siglip_tower_to_hf(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A timm SigLIP tower's weights (keys under ``prefix``) as ``JanusVisionModel`` weights.

    Splits the fused qkv, squeezes ``pos_embed`` and drops ``attn_pool.*`` (the pooling head, unused:
    the models read patch tokens). Keys outside ``prefix`` are ignored. Shared by every family that
    ships the original DeepSeek SigLIP tower (Janus 1.3B, JanusFlow).
    """
    renamed = original_to_hf({_TOWER + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return {k[len(_HF_TOWER):]: v for k, v in renamed.items()}


def hf_to_siglip_tower(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The inverse of :func:`siglip_tower_to_hf` (``attn_pool.*`` is not recreated)."""
    original = hf_to_original({_HF_TOWER + k: v for k, v in state.items()})
    return {prefix + k[len(_TOWER):]: v for k, v in original.items()}


_TOWER, _HF_TOWER = "vision_model.vision_tower.", "model.vision_model."


def original_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split / reshape where the layouts differ) an original Janus state dict."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if any(p.search(key) for p in _DROPPED):
            continue
        new = None
        for pattern, repl in _PREFIXES:
            if re.search(pattern, key):
                new = re.sub(pattern, repl, key)
                break
        if new is None:
            raise KeyError(f"unexpected parameter in the original Janus checkpoint: {key}")
        if new.startswith("model.vision_model.encoder.layers."):
            for pattern, repl in _VISION_BLOCK:
                new = re.sub(pattern, repl, new)
            if ".attn.qkv." in new:  # one fused projection -> q, k, v
                for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                    out[new.replace(".attn.qkv.", f".self_attn.{name}.")] = part
                continue
        elif new.startswith("model.vqmodel."):
            for pattern, repl in _VQ:
                new = re.sub(pattern, repl, new)
        elif new.startswith(("model.aligner.", "model.generation_aligner.")):
            new = re.sub(r"^(model\.\w+)\.layers\.(\d+)\.", _aligner_layer, new)
        if new == "model.vision_model.embeddings.position_embedding.weight":
            tensor = tensor.reshape(tensor.shape[-2], tensor.shape[-1])  # [1, N, D] -> [N, D]
        out[new] = tensor
    return out


def hf_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`original_to_hf`, for writing tiny checkpoints in the original layout."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        new = key
        if key.startswith("model.language_model."):
            new = "language_model.model." + key[len("model.language_model."):]
        elif key == "lm_head.weight":
            new = "language_model.lm_head.weight"
        elif key == "model.vision_model.embeddings.position_embedding.weight":
            new, tensor = "vision_model.vision_tower.pos_embed", tensor[None]
        elif key.startswith("model.vision_model.embeddings.patch_embedding."):
            new = "vision_model.vision_tower.patch_embed.proj." + key.rsplit(".", 1)[1]
        elif key.startswith("model.vision_model.post_layernorm."):
            new = key.replace("model.vision_model.post_layernorm.", "vision_model.vision_tower.norm.")
        elif key.startswith("model.vision_model.encoder.layers."):
            new = key.replace("model.vision_model.encoder.layers.", "vision_model.vision_tower.blocks.")
            new = new.replace(".layer_norm1.", ".norm1.").replace(".layer_norm2.", ".norm2.")
            new = new.replace(".self_attn.projection_layer.", ".attn.proj.")
            match = re.search(r"\.self_attn\.([qkv])_proj\.", new)
            if match:
                fused = new.replace(match.group(0), ".attn.qkv.")
                qkv.setdefault(fused, {})[match.group(1)] = tensor
                continue
        elif key.startswith("model.vqmodel."):
            new = "gen_vision_model." + key[len("model.vqmodel."):]
            new = new.replace(".encoder.down.", ".encoder.conv_blocks.")
            new = new.replace(".decoder.up.", ".decoder.conv_blocks.")
            new = new.replace(".block_1.", ".0.").replace(".attn_1.", ".1.").replace(".block_2.", ".2.")
            new = re.sub(r"\.block\.(\d+)\.", r".res.\1.", new)
        elif key.startswith(("model.aligner.", "model.generation_aligner.")):
            prefix = "aligner" if key.startswith("model.aligner.") else "gen_aligner"
            rest = key.split(".", 2)[2]
            if rest.startswith("fc1."):
                new = f"{prefix}.layers.0.{rest[4:]}"
            else:
                index, param = re.match(r"hidden_layers\.(\d+)\.(.*)", rest).groups()
                new = f"{prefix}.layers.{2 * (int(index) + 1)}.{param}"
        elif key.startswith("model.generation_head.proj_out."):
            new = key.replace("model.generation_head.proj_out.", "gen_head.output_mlp_projector.")
        elif key.startswith("model.generation_head."):
            new = key.replace("model.generation_head.", "gen_head.")
        elif key.startswith("model.generation_embeddings."):
            new = key.replace("model.generation_embeddings.", "gen_embed.")
        else:
            raise KeyError(f"no original name for {key}")
        out[new] = tensor
    for fused, parts in qkv.items():
        out[fused] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out
