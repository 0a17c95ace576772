"""Snapshot manifests (``configs/manifests/<id>.json``): one per catalog entry, checked without weights.

A manifest records the files the adapter reads and, where a public config was available, the tensor
names/shapes of the official checkpoint at full size (derived from the upstream module built on the meta
device; ``source`` says from where). Here our own adapters' modules are built on meta at the manifest's
real configs and must match it exactly, so a port that would not load the official weights fails in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umm.catalog import load_catalog
from umm.check import check_model, expected_files, load_manifest
from umm.registry import adapter_class

ROOT = Path(__file__).resolve().parents[1]
CATALOG = load_catalog()
IDS = [spec.id for spec in CATALOG if not spec.is_local]  # entries shipped in this repo (assets/) need none


def _write_configs(manifest: dict, root: Path) -> dict:
    """The manifest's configs laid out as a twin (``@name/...`` in ``root/name``); the located folders."""
    for relative, config in manifest.get("configs", {}).items():
        path = root / relative.lstrip("@")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
    spec = CATALOG.get(manifest["id"])
    return {None: root, **{name: root / name for name in spec.components}}


@pytest.mark.parametrize("model_id", IDS)
def test_every_entry_has_a_manifest_that_matches_its_catalog_entry(model_id):
    spec = CATALOG.get(model_id)
    manifest = load_manifest(model_id)
    assert manifest is not None, f"configs/manifests/{model_id}.json is missing"
    assert (manifest["id"], manifest["repo"], manifest["revision"]) == (spec.id, spec.repo, spec.revision)
    assert {n: c["revision"] for n, c in manifest["components"].items()} == {
        n: c.revision for n, c in spec.components.items()}
    assert set(expected_files(adapter_class(spec.family), None)) <= set(manifest["files"])
    assert isinstance(manifest["verified"], bool) and manifest["notes"]
    if manifest["verified"]:
        assert manifest["source"]["upstream"] and manifest["tensors"], "a verified manifest names its source"
    for names in manifest["tensors"].values():
        assert names and all(isinstance(s, list) and all(isinstance(d, int) for d in s) for s in names.values())


@pytest.mark.parametrize("model_id", [m for m in IDS if (load_manifest(m) or {}).get("source", {}).get("data")])
def test_manifest_agrees_with_the_family_names_shapes_data(model_id):
    """Where a family's port test checks its modules against tests/data, the manifest carries the same names."""
    manifest = load_manifest(model_id)
    data = json.loads((ROOT / manifest["source"]["data"]).read_text())
    flat: dict = {}
    for value in data.values():
        if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            flat.update(value)
    ours = {name: shape for group in manifest["tensors"].values() for name, shape in group.items()}
    shared = set(flat) & set(ours)
    assert len(shared) >= 0.5 * len(flat), "the manifest should carry the data file's tensors"
    assert {k: (ours[k], flat[k]) for k in shared if ours[k] != flat[k]} == {}


def _meta_cases() -> list:
    cases = []
    for model_id in IDS:
        manifest = load_manifest(model_id) or {}
        groups = adapter_class(CATALOG.get(model_id).family).checkpoint_groups()
        if any(groups.get(rel.removesuffix("config.json").rstrip("/")) for rel in manifest.get("configs", {})):
            cases.append(model_id)
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("model_id", _meta_cases())
def test_our_modules_on_meta_at_the_real_config_match_the_manifest(model_id, tmp_path):
    """Full-size meta builds (seconds each): every tensor group our adapter builds equals the manifest's."""
    manifest = load_manifest(model_id)
    cls = adapter_class(CATALOG.get(model_id).family)
    folders = _write_configs(manifest, tmp_path)
    built = {group: names for group, names in _buildable(cls, folders).items()}
    assert built, f"{model_id}: no group of the manifest can be built from its configs"
    for group, names in built.items():
        expected = manifest["tensors"][group]
        optional = set(manifest.get("optional", {}).get(group, ()))
        assert sorted(set(expected) - set(names) - optional) == [], f"{group}: missing"
        assert sorted(set(names) - set(expected)) == [], f"{group}: unexpected"
        assert {k: (names[k], v) for k, v in expected.items() if k in names and names[k] != v} == {}, group


def _buildable(cls, folders) -> dict:
    """Run the adapter's meta build only for groups whose config the manifest carries."""
    groups = {g: t for g, t in cls.checkpoint_groups().items()
              if t and ((folders[None] / (g.lstrip("@")) / "config.json").is_file())}
    sub = type("Probe", (cls,), {"checkpoint_modules": groups, "checkpoint_groups": classmethod(lambda c: groups)})
    return sub.expected_tensors(folders)


def test_manifest_drives_umm_check_of_a_real_entry(tiny_catalog):
    """Checking the (tiny) Bagel folder as the real entry compares it with the full-size manifest and fails."""
    twin = tiny_catalog.get("tiny-bagel")
    report = check_model(CATALOG.get("bagel-7b-mot"), twin.repo, memory=False)
    assert not report.row("tensors ema.safetensors").ok
    assert "manifest:" in report.row("tensors ema.safetensors").detail
    assert "shape" in report.row("tensors ema.safetensors").detail or "missing" in report.row(
        "tensors ema.safetensors").detail
