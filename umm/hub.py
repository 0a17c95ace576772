"""Where weights come from: the local Hugging Face cache, or the hub when it can be reached.

Checked before a load so an offline machine gets one clear sentence at once instead of minutes of
HTTP retries followed by a stack trace.
"""

from __future__ import annotations

import functools
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from umm.catalog import ModelSpec
from umm.errors import WeightsUnavailableError


def weights_present(spec: ModelSpec) -> bool:
    """Whether the pinned snapshot of every repo the model reads is already on this machine (no network)."""
    return all(snapshot_dir(part) is not None for part in spec.parts())


def snapshot_dir(spec: ModelSpec) -> Path | None:
    """The local folder of the model's main repo at its pin (a cache snapshot or a local path), if any."""
    if spec.is_local:
        return Path(spec.repo)
    from huggingface_hub import constants

    repo_dir = Path(constants.HF_HUB_CACHE) / f"models--{spec.repo.replace('/', '--')}"
    revision = spec.revision or "main"
    if (repo_dir / "snapshots" / revision).is_dir():
        return repo_dir / "snapshots" / revision
    ref = repo_dir / "refs" / revision
    if ref.is_file() and (repo_dir / "snapshots" / ref.read_text().strip()).is_dir():
        return repo_dir / "snapshots" / ref.read_text().strip()
    return None


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """False in offline mode; else a TCP connect to the hub endpoint, cached for a minute."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    return _reachable(constants.ENDPOINT, int(time.monotonic() // 60), timeout_s)


@functools.lru_cache(maxsize=4)
def _reachable(endpoint: str, _minute: int, timeout_s: float) -> bool:
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def missing_weights_error(spec: ModelSpec) -> WeightsUnavailableError:
    missing = [part for part in spec.parts() if snapshot_dir(part) is None] or spec.parts()
    repos = ", ".join(part.repo for part in missing)
    downloads = "; ".join(
        f"`hf download {part.repo}" + (f" --revision {part.revision}`" if part.revision else "`") for part in missing
    )
    error = WeightsUnavailableError(
        f"The weights of {spec.name} ({repos}) are not in the local Hugging Face cache and the hub "
        f"cannot be reached. Fetch them with `python -m umm fetch {spec.id}` (or "
        f"{downloads}) on a machine with hub "
        "access (they go to ~/.cache/huggingface/hub, or $HF_HOME/hub when HF_HOME is set), then copy "
        "that cache here or point HF_HOME at it."
    )
    error.short = (f"{spec.name} is not downloaded (not in the local Hugging Face cache): "
                   f"`python -m umm fetch {spec.id}`.")
    return error


def require_weights(spec: ModelSpec) -> str:
    """Where the load will read from ("disk" or "hub"); raises at once when neither works."""
    if weights_present(spec):
        return "disk"
    if hub_reachable():
        return "hub"
    raise missing_weights_error(spec)


# Pickled weights are never loaded, so they are never fetched either.
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5"]


def fetch(spec: ModelSpec) -> list[str]:
    """Download every repo the model reads at its pin into the Hugging Face cache.

    A component with ``allow`` patterns is fetched in part (the files the model reads from it).
    Pickles are skipped, except the files the catalog lists under ``convert``: those are fetched as
    files only; ``python -m umm convert`` then turns them into safetensors (never done implicitly).
    """
    if all(part.is_local for part in spec.parts()):
        return [part.repo for part in spec.parts()]
    if not hub_reachable():
        raise missing_weights_error(spec)
    paths = []
    for name, part in [(None, spec.part()), *((n, spec.part(n)) for n in spec.components)]:
        if part.is_local:
            paths.append(part.repo)
            continue
        allow = list(spec.components[name].allow) if name is not None else []
        paths.append(download_repo(
            part.repo, revision=part.revision, allow_patterns=allow or None, ignore_patterns=PICKLE_PATTERNS
        ))
        for pickle in spec.convert:
            if pickle.component == name:
                download_file(part.repo, pickle.file, revision=part.revision)
    return paths


def download_repo(repo: str, **kwargs) -> str:
    """The one place a whole (filtered) repo is downloaded; tests replace it to see what fetch asks for."""
    from huggingface_hub import snapshot_download

    return snapshot_download(repo, **kwargs)


def download_file(repo: str, filename: str, **kwargs) -> str:
    """The one place a single file is downloaded (a pickle listed under ``convert``)."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo, filename, **kwargs)
