"""`umm convert` (pickles → safetensors, explicit, weights_only) and multi-repo catalog entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from umm.catalog import Catalog, parse_spec
from umm.cli import main
from umm.convert import convert_file, convert_model, converted_path, require_converted
from umm.errors import CatalogError, ModelLoadError
from umm.hub import missing_weights_error, weights_present
from umm.tiny import tiny_spec

BASE = {
    "id": "m", "name": "M", "family": "janus", "repo": "org/m", "revision": "abc", "dtype": "bfloat16",
    "license": "MIT", "weight_bytes": 1, "capabilities": {"generate": {}},
}


class Opaque:  # not a tensor: weights_only loading must refuse it
    pass


@pytest.mark.parametrize("nesting", [None, "ema", "model", "state_dict"])
def test_convert_unwraps_the_trainer_nesting_and_keeps_every_tensor(tmp_path: Path, nesting):
    state = {"codebook.weight": torch.randn(8, 4), "decoder.conv.bias": torch.randn(3)}
    tied = {**state, "tied": state["codebook.weight"]}  # shared storage is written as its own copy
    obj = tied if nesting is None else {nesting: tied, "step": 7, "other": {"x": torch.zeros(1)}}
    src = tmp_path / "tok.pt"
    torch.save(obj, src)
    out = convert_file(src, revision="r1")
    assert out == converted_path(src) == tmp_path / "tok.safetensors"
    loaded = load_file(out)
    assert sorted(loaded) == sorted(tied)
    assert all(torch.equal(loaded[k], v) for k, v in tied.items())
    manifest = json.loads((tmp_path / "tok.umm-convert.json").read_text())
    assert manifest["source"] == "tok.pt" and manifest["revision"] == "r1" and len(manifest["sha256"]) == 64
    mtime = out.stat().st_mtime_ns
    assert convert_file(src) == out and out.stat().st_mtime_ns == mtime  # idempotent


def test_convert_refuses_a_pickle_with_an_arbitrary_object(tmp_path: Path):
    src = tmp_path / "evil.bin"
    torch.save({"w": torch.ones(2), "obj": Opaque()}, src)
    with pytest.raises(ModelLoadError, match="other than plain tensors"):
        convert_file(src)
    assert not converted_path(src).exists()


def test_convert_refuses_non_tensor_entries_by_name(tmp_path: Path):
    src = tmp_path / "mixed.pt"
    torch.save({"w": torch.ones(2), "lr": 0.1}, src)
    with pytest.raises(ModelLoadError, match="'lr' is a float"):
        convert_file(src)


def test_loader_asks_for_convert_until_it_has_run(tmp_path: Path):
    spec = parse_spec({**BASE, "repo": str(tmp_path), "convert": ["sub/tok.pt"]})
    (tmp_path / "sub").mkdir()
    torch.save({"ema": {"w": torch.ones(2)}}, tmp_path / "sub" / "tok.pt")
    with pytest.raises(ModelLoadError, match="python -m umm convert m"):
        require_converted(spec, tmp_path, "sub/tok.pt")
    assert convert_model(spec) == [tmp_path / "sub" / "tok.safetensors"]
    assert require_converted(spec, tmp_path, "sub/tok.pt") == tmp_path / "sub" / "tok.safetensors"


def test_convert_command(tmp_path: Path, monkeypatch, capsys):
    spec = parse_spec({**BASE, "repo": str(tmp_path), "convert": ["tok.pt"]})
    torch.save({"w": torch.ones(2)}, tmp_path / "tok.pt")
    monkeypatch.setattr("umm.api.full_catalog", lambda demo=False: Catalog([spec]))
    assert main(["convert", "m"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "tok.safetensors").is_file()


def test_components_are_parts_with_their_own_pins(tmp_path: Path):
    spec = parse_spec({
        **BASE, "components": {"vae": {"repo": "org/vae", "revision": "def"}},
        "convert": [{"file": "tok.pt", "component": "vae"}],
    })
    assert [(p.repo, p.revision) for p in spec.parts()] == [("org/m", "abc"), ("org/vae", "def")]
    assert spec.part("vae").components == {} and spec.convert[0].component == "vae"
    text = str(missing_weights_error(spec))
    assert "org/vae --revision def" in text and "org/m --revision abc" in text
    twin = tiny_spec(spec, tmp_path)
    (tmp_path / "vae").mkdir()
    assert twin.part("vae").repo == str(tmp_path / "vae") and weights_present(twin)
    with pytest.raises(CatalogError, match="no component"):
        spec.part("nope")


def test_catalog_refuses_malformed_components_and_converts():
    with pytest.raises(CatalogError, match="component vae"):
        parse_spec({**BASE, "components": {"vae": "org/vae"}})
    with pytest.raises(CatalogError, match="unknown component"):
        parse_spec({**BASE, "convert": [{"file": "x.pt", "component": "vae"}]})
