"""``python -m umm convert <id>``: official pickle files turned into safetensors, once, on request.

Some official checkpoints ship a file only as a pickle (a tokenizer ``.pt``, a ``pytorch_model.bin``).
umm never unpickles at serve time: the user converts such files explicitly, with
``torch.load(weights_only=True)`` (plain tensors and containers only, nothing else is unpickled),
and the loaders then read only the safetensors written beside the original, plus a small manifest
saying where they came from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

from umm.catalog import ModelSpec, PickleFile
from umm.errors import ModelLoadError

log = logging.getLogger(__name__)

# Where trainers nest the weights; tried in this order (TokenFlow's loader uses the same order).
NESTING_KEYS = ("ema", "model", "state_dict", "module")


def converted_path(pickle_path: Path) -> Path:
    """The safetensors file ``umm convert`` writes for ``pickle_path`` (same folder, same stem)."""
    return Path(pickle_path).with_suffix(".safetensors")


def manifest_path(pickle_path: Path) -> Path:
    return Path(pickle_path).with_suffix(".umm-convert.json")


def state_dict_of(obj: object, source: str) -> dict:
    """The flat name → tensor mapping inside a loaded pickle; anything else is refused by name."""
    import torch

    if isinstance(obj, dict):
        for key in NESTING_KEYS:
            if isinstance(obj.get(key), dict):
                return state_dict_of(obj[key], f"{source}[{key!r}]")
    if not isinstance(obj, dict) or not obj:
        raise ModelLoadError(f"{source}: expected a dict of tensors (a state dict), found {type(obj).__name__}.")
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            raise ModelLoadError(
                f"{source}: entry {prefix!r} is a {type(value).__name__}, not a tensor; refusing to convert it."
            )

    walk("", obj)
    return flat


def convert_file(pickle_path: Path, revision: str | None = None) -> Path:
    """Convert one pickle into safetensors beside it (idempotent: a matching manifest is kept)."""
    import pickle

    import torch
    from safetensors.torch import save_file

    pickle_path = Path(pickle_path)
    digest = _sha256(pickle_path)
    out, manifest = converted_path(pickle_path), manifest_path(pickle_path)
    if out.is_file() and manifest.is_file() and json.loads(manifest.read_text()).get("sha256") == digest:
        return out
    try:
        # Trainers save their argparse options beside the weights (TokenFlow's vq_train.py does); a
        # Namespace holds plain values only, so it is allowed, and dropped with the rest of the non-weights.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(pickle_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as err:
        raise ModelLoadError(
            f"{pickle_path.name} holds something other than plain tensors, so it was not converted "
            f"(torch.load with weights_only=True refused it: {str(err).splitlines()[0]})."
        ) from err
    tensors = {k: v.contiguous() for k, v in state_dict_of(obj, pickle_path.name).items()}
    tmp = out.with_suffix(".safetensors.partial")
    save_file(_unshare(tensors), str(tmp), metadata={"source": pickle_path.name, "sha256": digest})
    tmp.replace(out)
    manifest.write_text(json.dumps(
        {"source": pickle_path.name, "sha256": digest, "revision": revision, "tensors": len(tensors)}, indent=1
    ))
    log.info("converted %s -> %s (%d tensors)", pickle_path, out, len(tensors))
    return out


def convert_model(spec: ModelSpec) -> list[Path]:
    """Convert every pickle the catalog lists for ``spec``; the files must already be downloaded."""
    return [convert_file(pickle_source(spec, item), spec.part(item.component).revision) for item in spec.convert]


def pickle_source(spec: ModelSpec, item: PickleFile) -> Path:
    from umm.hub import missing_weights_error, snapshot_dir

    part = spec.part(item.component)
    folder = snapshot_dir(part)
    path = None if folder is None else folder / item.file
    if path is None or not path.is_file():
        if folder is None:
            raise missing_weights_error(spec)
        raise ModelLoadError(
            f"{item.file} of {part.repo} is not downloaded; `python -m umm fetch {spec.id}` fetches it."
        )
    return path


def require_converted(spec: ModelSpec, folder: Path, file: str) -> Path:
    """The safetensors copy of an official pickle, or one sentence naming the command that makes it."""
    path = converted_path(Path(folder) / file)
    if not path.is_file():
        raise ModelLoadError(
            f"{spec.name} ships {Path(file).name} only as a pickle, and umm loads safetensors only. Convert it "
            f"once with `python -m umm convert {spec.id}` (reads it with torch.load(weights_only=True) and "
            "writes safetensors beside it)."
        )
    return path


def _unshare(tensors: dict) -> dict:
    """safetensors refuses tensors that share storage; give each its own copy where they do."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        out[name] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
