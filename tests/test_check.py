"""``umm check``: every tiny twin passes, and each way a download can be broken fails the right row."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from umm.catalog import PickleFile
from umm.check import check_model, read_headers
from umm.cli import main


@pytest.fixture
def janus(tiny_catalog, tmp_path):
    """A private copy of the Janus twin, free to corrupt."""
    spec = tiny_catalog.get("tiny-janus")
    folder = tmp_path / "janus"
    shutil.copytree(spec.repo, folder)
    return spec.replace(repo=str(folder)), folder


def _failed(report) -> set[str]:
    return {row.name for row in report.failed()}


def _rewrite(path, change):
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_intact_twin_passes(janus):
    spec, folder = janus
    report = check_model(spec, folder)
    assert report.ok, report.table()
    assert report.verdict.startswith("✓")
    assert "match model on meta" in report.row("tensors .").detail


def test_missing_file_fails_files_row(janus):
    spec, folder = janus
    (folder / "tokenizer_config.json").unlink()
    report = check_model(spec, folder)
    assert "files" in _failed(report)
    assert "tokenizer_config.json" in report.row("files").detail


def test_unparsable_config_fails_configs_row(janus):
    spec, folder = janus
    (folder / "config.json").write_text('{"model_type": "janus",')
    report = check_model(spec, folder)
    assert {"configs", "model"} <= _failed(report)
    assert "config.json" in report.row("configs").detail
    assert report.verdict.startswith("✗ tiny-janus: configs")


@pytest.mark.parametrize("corruption, word", [
    (lambda t: t.pop("model.vqmodel.quantize.embedding.weight"), "1 missing"),
    (lambda t: t.__setitem__("model.vqmodel.quantize.codebook.weight",
                             t.pop("model.vqmodel.quantize.embedding.weight")),
     "1 unexpected: model.vqmodel.quantize.codebook.weight"),
    (lambda t: t.__setitem__("lm_head.weight", t["lm_head.weight"][:-1].clone()), "1 shape: lm_head.weight"),
])
def test_broken_tensors_fail_tensors_row(janus, corruption, word):
    spec, folder = janus
    _rewrite(folder / "model.safetensors", corruption)
    report = check_model(spec, folder)
    assert _failed(report) == {"tensors ."}, report.table()
    assert word in report.row("tensors .").detail


def test_pickle_only_weights_name_the_convert_command(janus):
    spec, folder = janus
    weights = folder / "model.safetensors"
    torch.save(load_file(str(weights)), folder / "pytorch_model.bin")
    weights.unlink()
    report = check_model(spec, folder)
    assert "only pickle weights (pytorch_model.bin)" in report.row("tensors .").detail
    assert "not supported" in report.row("tensors .").detail
    listed = spec.replace(convert=(PickleFile("pytorch_model.bin"),))
    report = check_model(listed, folder)
    assert f"python -m umm convert {spec.id}" in report.row("tensors .").detail
    assert f"python -m umm convert {spec.id}" in report.row("convert pytorch_model.bin").detail
    from umm.convert import convert_file

    convert_file(folder / "pytorch_model.bin")  # what `umm convert` does; the loader reads the copy
    assert "tensors ." not in _failed(check_model(listed, folder))


def test_tokenizer_without_a_special_token_fails_tokenizer_row(janus):
    spec, folder = janus
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = folder / name
        path.write_text(path.read_text().replace("<begin_of_image>", "<begin_of_picture>"))
    report = check_model(spec, folder)
    assert "tokenizer ." in _failed(report)
    assert "<begin_of_image>" in report.row("tokenizer .").detail


def test_component_tensor_fails_its_own_group(tiny_catalog, tmp_path):
    """Components are checked in their own folders (the twin's ``<dir>/<component>``)."""
    spec = tiny_catalog.get("tiny-blip3o")
    folder = tmp_path / "blip3o"
    shutil.copytree(spec.repo, folder)
    vae = folder / "sana" / "vae" / "diffusion_pytorch_model.safetensors"
    _rewrite(vae, lambda t: t.pop(sorted(t)[0]))
    report = check_model(spec, folder)
    assert _failed(report) == {"tensors @sana/vae"}, report.table()


def test_quick_mode_skips_the_meta_build(janus):
    spec, folder = janus
    _rewrite(folder / "model.safetensors", lambda t: t.pop("lm_head.weight"))
    assert not check_model(spec, folder).row("tensors .").ok
    quick = check_model(spec, folder, meta=False)  # no manifest for a twin: headers are only read
    assert quick.row("tensors .").ok and "headers only" in quick.row("tensors .").detail


def test_truncated_download_fails_disk_row(janus):
    spec, folder = janus
    report = check_model(spec.replace(weight_bytes=spec.weight_bytes * 10), folder)
    assert _failed(report) == {"disk"}


def test_headers_are_read_without_tensor_data(janus):
    _, folder = janus
    headers = read_headers([folder / "model.safetensors"])
    assert headers["lm_head.weight"][1] == "F32" and len(headers["lm_head.weight"][0]) == 2


def test_cli_exit_code(janus, capsys):
    _, folder = janus
    assert main(["check", "janus-pro-1b", "--path", str(folder)]) == 1  # the full-size manifest differs
    assert "tensors ." in capsys.readouterr().out
    assert main(["check", "janus-pro-1b", "--path", str(folder / "nowhere")]) == 1
    assert "not downloaded" in capsys.readouterr().out


def test_fetch_runs_the_check_after_downloading(tiny_catalog, monkeypatch, capsys):
    import umm.api
    import umm.hub

    monkeypatch.setattr(umm.api, "full_catalog", lambda demo=None: tiny_catalog)
    monkeypatch.setattr(umm.hub, "fetch", lambda spec: [spec.repo])
    assert main(["fetch", "tiny-janus"]) == 0
    out = capsys.readouterr().out
    assert "tensors ." in out and "✓ tiny-janus: snapshot complete" in out
