"""Shared fixtures: tiny checkpoints of every catalog family, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from umm.catalog import Catalog, load_catalog
from umm.manager import ModelManager
from umm.tiny import build_tiny_catalog

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the hub

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


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
