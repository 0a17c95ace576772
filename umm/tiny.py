"""Tiny random checkpoints of the real architectures, for tests and the offline demo.

Each adapter's ``build_tiny`` writes a checkpoint in the hub repo's layout; this module holds what
they share (an offline tokenizer) and turns a real catalog entry into its tiny twin, which loads
through exactly the same ``from_pretrained`` code path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import os
import shutil
from pathlib import Path

from umm.catalog import CapabilitySpec, Catalog, Component, ModelSpec

log = logging.getLogger(__name__)

CORPUS = (
    "a photo of a cat sitting on a red chair. describe the image in detail. "
    "what is in this picture? a dog running under the rain, a city at night, "
    "the quick brown fox jumps over the lazy dog. 0123456789 ,.;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`\n"
)


def train_tokenizer(special_tokens: list[str], vocab_size: int = 384, **fast_kwargs):
    """A byte-level BPE tokenizer trained in-process (no downloads), special tokens first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **fast_kwargs)


def save_tiny_vae(directory: Path, *, scaling_factor: float, shift_factor: float | None = None) -> None:
    """A tiny FLUX/SD3-style ``AutoencoderKL`` (16 latent channels, 8x down, no quant convs) in diffusers layout.

    OmniGen2 and DeepGen decode with this architecture; only the latent normalisation differs.
    """
    from diffusers import AutoencoderKL

    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ).save_pretrained(directory)


# Demo defaults for twins: the real 1024 px / 50 steps / 512 tokens are minutes of noise on a CPU.
DEMO_DEFAULTS = {"width": 256, "height": 256, "steps": 8, "max_new_tokens": 64, "max_pixels": 65536}


def demo_capabilities(spec: ModelSpec) -> dict[str, CapabilitySpec]:
    """The same parameter schema with cheaper defaults (ranges unchanged, so validation is the same)."""
    out = {}
    for name, cap in spec.capabilities.items():
        params = []
        for p in cap.params:
            if p.name in DEMO_DEFAULTS:
                low = p.min if p.min is not None else DEMO_DEFAULTS[p.name]
                p = dataclasses.replace(p, default=p.validate(max(low, DEMO_DEFAULTS[p.name])))
            elif p.type == "choice" and p.choices and all(isinstance(c, (int, float)) for c in p.choices):
                p = dataclasses.replace(p, default=min(p.choices))
            params.append(p)
        out[name] = dataclasses.replace(cap, params=tuple(params))
    return out


def tiny_spec(spec: ModelSpec, directory: Path) -> ModelSpec:
    """The tiny twin of a catalog entry: same family and parameter ranges, local random weights.

    The main repo is ``directory`` and each catalog component (a VAE repo, a tokenizer repo) is the
    subfolder ``directory/<component name>``, laid out like that repo; ``build_tiny`` writes both.
    """
    return spec.replace(
        components={name: Component(str(directory / name)) for name in spec.components},
        capabilities=demo_capabilities(spec),
        id=f"tiny-{spec.id}",
        name=f"{spec.name} (tiny, random weights)",
        repo=str(directory),
        revision=None,
        dtype="float32",
        weight_bytes=sum(p.stat().st_size for p in directory.rglob("*.safetensors")),
        description=f"Random tiny weights with the architecture of {spec.name}, for tests and demos.",
        demo=True,
    )


def build_tiny_catalog(catalog: Catalog, root: Path, families: set[str] | None = None) -> Catalog:
    """Build (or reuse) one tiny checkpoint per family and return a catalog of their twins.

    One checkpoint per family is enough: entries of the same family differ only in size.
    """
    from umm.registry import adapter_class

    root = Path(root)
    specs: dict[str, ModelSpec] = {}
    for spec in catalog:
        if families is not None and spec.family not in families:
            continue
        if spec.family in specs:  # entries split by task (Emu3 Chat/Gen): the one twin does every task
            twin = specs[spec.family]
            specs[spec.family] = twin.replace(
                capabilities={**demo_capabilities(spec), **twin.capabilities}, options={**spec.options, **twin.options}
            )
            continue
        cls = adapter_class(spec.family)
        directory = root / spec.family
        marker = directory / ".complete"
        version = _source_hash(cls)
        if not marker.exists() or marker.read_text() != version:
            shutil.rmtree(directory, ignore_errors=True)
            import torch

            with torch.random.fork_rng(devices=[]):  # builders seed torch; leave the caller's RNG as it was
                cls.build_tiny(directory, spec)
            marker.write_text(version)
            log.info("built tiny %s checkpoint in %s", spec.family, directory)
        specs[spec.family] = tiny_spec(spec, directory).replace(
            id=f"tiny-{spec.family}", name=f"Tiny {spec.family} (random weights)"
        )
    return Catalog(list(specs.values()))


def default_tiny_root() -> Path:
    return Path(os.environ.get("UMM_TINY_DIR") or Path.home() / ".cache" / "umm" / "tiny")


def _source_hash(cls: type) -> str:
    """Rebuild a cached tiny checkpoint whenever the code that builds it changes.

    That is the adapter file plus its port package (``umm/ports/<adapter module name>/``), where a
    family's tiny builder may live.
    """
    adapter = Path(inspect.getfile(cls))
    port = adapter.parents[1] / "ports" / adapter.stem
    digest = hashlib.sha256(adapter.read_bytes())
    for path in sorted(port.rglob("*.py")) if port.is_dir() else ():
        digest.update(path.read_bytes())
    return digest.hexdigest()
