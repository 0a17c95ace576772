"""Helpers shared by the benchmarks: interleaved timing, machine description, JSON records, Janus builds.

Every benchmark measures its alternatives side by side in one process, interleaving repetitions
(A, B, A, B, ...) so slow drift of a noisy machine hits both sides alike, and reports medians and the
ratio of medians. Records go to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
if str(ROOT) not in sys.path:  # run as `python bench/<name>.py` from anywhere
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never touch the hub


# -- timing --------------------------------------------------------------------------------------
def interleave(
    cases: dict[str, Callable[[], Any]], *, reps: int, warmup: int = 1, setup: Callable[[str], Any] | None = None
) -> dict[str, list[float]]:
    """Time each case ``reps`` times, alternating the cases on every repetition (A, B, A, B, ...).

    ``setup(name)`` (untimed) runs before each timed call, e.g. to drop a model or reset a cache.
    Warm-up rounds run every case first and are not recorded.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(warmup + reps):
        for name, fn in cases.items():
            if setup is not None:
                setup(name)
            started = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - started
            if rep >= warmup:
                times[name].append(elapsed)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(times: dict[str, list[float]], ours: str, reference: str) -> float:
    return median(times[ours]) / median(times[reference])


def summarize(times: dict[str, list[float]]) -> dict[str, Any]:
    return {
        name: {"median_s": round(median(v), 6), "min_s": round(min(v), 6), "max_s": round(max(v), 6), "n": len(v)}
        for name, v in times.items()
    }


# -- records -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def write_record(name: str, record: dict[str, Any], out_dir: Path | str | None = None) -> Path:
    """Write ``record`` (plus machine and time) to ``<out_dir or bench/results>/<name>.json``."""
    directory = Path(out_dir) if out_dir else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    full = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **record}
    path.write_text(json.dumps(full, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return path


def line(label: str, value: str) -> None:
    print(f"  {label:<48} {value}")


def verdict(value: float, target: float, *, at_most: bool = True) -> str:
    ok = value <= target if at_most else value >= target
    return f"{'PASS' if ok else 'MISS'} (target {'<=' if at_most else '>='} {target:g})"


# -- memory --------------------------------------------------------------------------------------
def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def collect() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def drop_page_cache_hint(directory: Path) -> None:
    """Read every file once so a 'cold' load below comes from the page cache, not the disk."""
    for path in Path(directory).rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                while fh.read(1 << 24):
                    pass


# -- Janus checkpoints of chosen size ------------------------------------------------------------
# Sizes of the real Janus-Pro configs are in bench/generation_gpu.py; these are scaled-down twins.
JANUS_SIZES: dict[str, dict[str, Any]] = {
    # The tests' tiny model (a few hundred KB): measures pure per-step overhead.
    "tiny": {
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 4, "vocab_size": None},
        "vision": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 64},
        "vq": {"embed_dim": 8, "num_embeddings": 64, "latent_channels": 32, "base_channels": 32,
               "channel_multiplier": [1, 1, 1, 1, 1], "num_res_blocks": 1},
    },
    # ~300M parameters: Janus-Pro's shape (Llama text, SigLIP vision, 16384x8 VQ) at 1024 hidden.
    "300m": {
        "text": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 15, "num_attention_heads": 16,
                 "num_key_value_heads": 16, "vocab_size": 32000},
        "vision": {"hidden_size": 512, "num_hidden_layers": 6, "num_attention_heads": 8, "image_size": 384},
        "vq": {"embed_dim": 8, "num_embeddings": 16384, "latent_channels": 64, "base_channels": 32,
               "channel_multiplier": [1, 1, 2, 2, 4], "num_res_blocks": 1},
    },
}


def build_janus(directory: Path | str, size: str = "tiny", *, image_size: int | None = None) -> Path:
    """A random-weights Janus checkpoint (model + processor) laid out like the hub repo.

    Same recipe as ``JanusAdapter.build_tiny`` (offline BPE tokenizer, the Janus-Pro chat template),
    with the model dimensions of ``JANUS_SIZES[size]``. ``image_size`` overrides the generated image
    side (num_image_tokens = (image_size / 16)²). Reuses a finished build in ``directory``.
    """
    from umm.adapters.janus import save_random_janus

    directory = Path(directory)
    preset = JANUS_SIZES[size]
    image_size = image_size or preset["vision"]["image_size"]
    marker = directory / ".complete"
    tag = json.dumps([preset, image_size], sort_keys=True)
    if marker.exists() and marker.read_text() == tag:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        save_random_janus(
            directory,
            text=preset["text"],
            vision={k: v for k, v in preset["vision"].items() if k != "image_size"},
            vq=preset["vq"],
            image_size=image_size,
        )
    marker.write_text(tag)
    return directory


def janus_spec(directory: Path | str, model_id: str = "bench-janus"):
    """A catalog entry for a local Janus checkpoint (the real janus-pro-1b entry, pointed at it)."""
    from umm.catalog import load_catalog
    from umm.tiny import tiny_spec

    base = next(spec for spec in load_catalog() if spec.family == "janus")
    return tiny_spec(base, Path(directory)).replace(id=model_id, name=f"{model_id} (random weights)")


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
