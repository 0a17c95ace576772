"""Shared fixtures: tiny checkpoints of every catalog family, built once per test session."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from umm.catalog import Catalog, load_catalog
from umm.manager import ModelManager
from umm.tiny import build_tiny_catalog

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the hub

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run fastest single-threaded, and then do not fight the app server for the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def tiny_catalog(real_catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """One tiny twin per family in the real catalog, loaded through the real code path."""
    root = Path(os.environ.get("UMM_TEST_TINY_DIR") or tmp_path_factory.mktemp("tiny"))
    return build_tiny_catalog(real_catalog, root)


@pytest.fixture
def manager(tiny_catalog: Catalog) -> ModelManager:
    return ModelManager(tiny_catalog, device="cpu")


def tiny_ids() -> list[str]:
    """Test ids for parametrisation, known without building anything."""
    seen: dict[str, None] = {}
    for spec in load_catalog():
        seen.setdefault(f"tiny-{spec.family}")
    return list(seen)


CHEAP = {"num_images": 1, "steps": 1, "max_new_tokens": 8, "width": 64, "height": 64, "max_pixels": 4096}


def cheap_params(spec, capability: str, **overrides) -> dict:
    """The cheapest settings a model's schema allows, for CPU tests; sampling on, so seeds matter.

    Tiny twins keep the real entries' schemas (1024 px, 50 steps, …), so tests lower them explicitly.
    """
    params = {}
    for p in spec.capability(capability).params:
        if p.name in CHEAP:
            params[p.name] = max(p.min if p.min is not None else CHEAP[p.name], CHEAP[p.name])
        elif p.name == "temperature":
            params[p.name] = 1.0
        elif p.type == "choice" and all(isinstance(c, (int, float)) for c in p.choices):
            params[p.name] = min(p.choices)  # smallest area / size
    params.update(overrides)
    return params


# Headless Chromium for the browser tests (the system's package; Playwright drives it, never installs one).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (apt-get install -y chromium)"),
]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_app(manager: ModelManager, *, max_upload_bytes: int = 2_000_000, **build):
    """The web app over ``manager``, launched on 127.0.0.1 for the duration of the block."""
    from umm.ui.app import build_app, launch_kwargs

    app = build_app(manager, max_upload_bytes=max_upload_bytes, **build)
    app.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
        **launch_kwargs(max_upload_bytes),
    )
    try:
        yield app
    finally:
        app.close()
