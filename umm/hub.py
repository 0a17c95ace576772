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
    """Whether the pinned snapshot is already on this machine (no network)."""
    if spec.is_local:
        return True
    from huggingface_hub import constants

    repo_dir = Path(constants.HF_HUB_CACHE) / f"models--{spec.repo.replace('/', '--')}"
    revision = spec.revision or "main"
    if (repo_dir / "snapshots" / revision).is_dir():
        return True
    ref = repo_dir / "refs" / revision
    return ref.is_file() and (repo_dir / "snapshots" / ref.read_text().strip()).is_dir()


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
    revision = f" --revision {spec.revision}" if spec.revision else ""
    return WeightsUnavailableError(
        f"The weights of {spec.name} ({spec.repo}) are not in the local Hugging Face cache and the hub "
        f"cannot be reached. Fetch them with `python -m umm fetch {spec.id}` (or "
        f"`hf download {spec.repo}{revision}`) on a machine with hub "
        "access (they go to ~/.cache/huggingface/hub, or $HF_HOME/hub when HF_HOME is set), then copy "
        "that cache here or point HF_HOME at it."
    )


def require_weights(spec: ModelSpec) -> str:
    """Where the load will read from ("disk" or "hub"); raises at once when neither works."""
    if weights_present(spec):
        return "disk"
    if hub_reachable():
        return "hub"
    raise missing_weights_error(spec)


# Pickled weights are never loaded, so they are never fetched either.
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5"]


def fetch(spec: ModelSpec) -> str:
    """Download the pinned snapshot into the Hugging Face cache (safetensors and configs only)."""
    from huggingface_hub import snapshot_download

    if spec.is_local:
        return spec.repo
    if not hub_reachable():
        raise missing_weights_error(spec)
    return snapshot_download(spec.repo, revision=spec.revision, ignore_patterns=PICKLE_PATTERNS)
