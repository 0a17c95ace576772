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


def describe(device: torch.device) -> str:
    """One line for people: which accelerator, and how much of its memory is free right now."""
    if not isinstance(device, torch.device):  # a remote backend describes its own devices
        return str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        name = torch.cuda.get_device_name(device)
        return f"{name} (cuda) · {free / 1e9:.1f} of {total / 1e9:.1f} GB free"
    if device.type == "mps":
        return "Apple GPU (mps) · shares system memory"
    import os

    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f" · {free / 1e9:.1f} of {total / 1e9:.1f} GB RAM free"
    except (ValueError, OSError, AttributeError):
        memory = ""
    return f"CPU, {os.cpu_count()} cores (no accelerator){memory}"
