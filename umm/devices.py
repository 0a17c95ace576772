"""Accelerator choice and memory hygiene, in one place so the manager and benchmarks agree."""

from __future__ import annotations

import gc

import torch


def pick_device(preferred: str | None = None) -> torch.device:
    """cuda, else mps, else cpu (or the caller's explicit choice)."""
    if preferred:
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def torch_dtype(name: str, device: torch.device) -> torch.dtype:
    """The catalog dtype, except float16 on CPU (slow and lossy there) becomes float32."""
    dtype = getattr(torch, name)
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32
    return dtype


def free_memory(device: torch.device | None = None, *, collect: bool = True) -> None:
    """Collect garbage (a full pass costs ~0.1-1 s with transformers loaded) and return cached blocks."""
    if collect:
        gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def allocated_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return 0
