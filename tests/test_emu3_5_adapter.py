"""Emu3.5 adapter on its tiny twin: layout, conversion, sizes, progress, stopping and official defaults."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import cheap_params
from PIL import Image

from umm.adapters.emu3_5 import ASPECT_RATIOS, Emu35Adapter, grid_hw, image_codes
from umm.catalog import load_catalog
from umm.control import RunControl
from umm.errors import ModelLoadError
from umm.types import EditRequest, GenerateRequest, Message, UnderstandRequest

ID = "tiny-emu3_5"


@pytest.fixture(scope="module")
def adapter(tiny_catalog):
    adapter = Emu35Adapter(tiny_catalog.get(ID))
    adapter.load(torch.device("cpu"), torch.float32)
    return adapter


def test_twin_has_the_official_layout(tiny_catalog):
    root = Path(tiny_catalog.get(ID).repo)
    assert (root / "config.json").read_text().count('"model_type": "Emu3"') == 1
    assert (root / "model.safetensors.index.json").is_file() and len(list(root.glob("model-0000*.safetensors"))) == 2
    assert (root / "emu3.tiktoken").is_file() and (root / "emu3_vision_tokens.txt").is_file()
    vision = root / "vision_tokenizer"
    assert (vision / "config.yaml").is_file() and (vision / "model.ckpt").is_file()
    assert (vision / "model.safetensors").is_file()  # what `umm convert` writes; the only file loaded


def test_unconverted_ckpt_names_the_convert_command(tiny_catalog, tmp_path):
    spec = tiny_catalog.get(ID)
    copy = tmp_path / "twin"
    shutil.copytree(spec.repo, copy)
    (copy / "vision_tokenizer" / "model.safetensors").unlink()
    twin = spec.replace(repo=str(copy), components={"vision_tokenizer": spec.components["vision_tokenizer"].__class__(
        str(copy / "vision_tokenizer"))})
    with pytest.raises(ModelLoadError, match=r"python -m umm convert tiny-emu3_5"):
        Emu35Adapter(twin).load(torch.device("cpu"), torch.float32)


def test_official_defaults_in_the_catalog():
    catalog = load_catalog()
    chat, image = catalog.get("emu3.5"), catalog.get("emu3.5-image")
    assert chat.components == image.components and chat.convert == image.convert
    assert chat.components["vision_tokenizer"].repo == "BAAI/Emu3.5-VisionTokenizer"
    t2i, x2i = image.capability("generate").defaults(), image.capability("edit").defaults()
    assert (t2i["guidance_scale"], t2i["image_area"], t2i["image_top_k"], t2i["image_temperature"]) == (5.0, 1048576,
                                                                                                       5120, 1.0)
    assert (x2i["guidance_scale"], x2i["image_area"], x2i["image_top_k"]) == (3.0, 1048576, 5120)
    text = chat.capability("understand").defaults()
    assert (text["top_k"], text["top_p"], text["temperature"]) == (1024, 0.9, 1.0)
    assert grid_hw(t2i) == (55, 73) and ASPECT_RATIOS["1:1"] == (64, 64)  # upstream's "default" preset
    assert grid_hw({**t2i, "aspect_ratio": "auto"}) is None


def test_generate_reports_every_token_and_stops_at_image_end(adapter, tiny_catalog):
    params = cheap_params(tiny_catalog.get(ID), "generate")
    h, w = grid_hw(adapter.spec.capability("generate").validate(params))
    seen = []
    control = RunControl(on_progress=lambda done, total, what: seen.append((done, total, what)))
    result = adapter.generate(GenerateRequest("a red cube", params=params, seed=7), control)
    total = 2 + len(f"{h}*{w}") + h * (w + 1)  # <|image start|>, h*w, <|image token|>, rows, <|image end|>
    assert [d for d, _, _ in seen] == list(range(1, total + 1))
    assert {t for _, t, _ in seen} == {total} and seen[0][2] == "tokens"
    assert result.images[0].size == (16 * w, 16 * h)


def test_edit_output_takes_the_reference_size(adapter, tiny_catalog):
    params = cheap_params(tiny_catalog.get(ID), "edit")
    reference = Image.new("RGB", (90, 40), (10, 200, 30))  # wide: 16384 px -> 192x80 -> 12x5 tokens
    result = adapter.edit(EditRequest([reference], "make it red", params=params, seed=3), RunControl())
    assert result.images[0].size == (192, 80)
    assert set(result.info.timings) == {"encode_s", "sample_s", "decode_s"}


def test_chat_streams_multi_turn_with_images(adapter, tiny_catalog):
    params = cheap_params(tiny_catalog.get(ID), "understand", max_new_tokens=12)
    messages = [
        Message("user", "what is this?", [Image.new("RGB", (40, 40), (200, 10, 10))]),
        Message("assistant", "a red square"),
        Message("user", "and the colour?"),
    ]
    chunks = list(adapter.understand(UnderstandRequest(messages, params=params, seed=1), RunControl()))
    assert chunks and all(isinstance(c, str) and "<|" not in c for c in chunks)
    greedy = {**params, "temperature": 0.0}
    first = list(adapter.understand(UnderstandRequest(messages, params=greedy, seed=1), RunControl()))
    assert first == list(adapter.understand(UnderstandRequest(messages, params=greedy, seed=2), RunControl()))


def test_image_codes_reads_rows(adapter):
    tok = adapter.tokenizer
    codes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    ids = tok.image_ids(codes)[1:]  # as generated after a forced <|image start|>
    assert torch.equal(image_codes(ids, tok), codes)
    with pytest.raises(Exception, match="did not finish an image"):
        image_codes(ids[:-1], tok)


def test_tokenizer_files_missing_or_elsewhere(tiny_catalog, tmp_path):
    """Upstream keeps emu3.tiktoken in its GitHub repo: a clear error, and options.tokenizer_dir to point there."""
    spec = tiny_catalog.get(ID)
    copy, elsewhere = tmp_path / "twin", tmp_path / "tokenizer_emu3_ibq"
    shutil.copytree(spec.repo, copy)
    elsewhere.mkdir()
    for name in ("emu3.tiktoken", "emu3_vision_tokens.txt"):
        (copy / name).rename(elsewhere / name)
    component = spec.components["vision_tokenizer"].__class__(str(copy / "vision_tokenizer"))
    twin = spec.replace(repo=str(copy), components={"vision_tokenizer": component})
    with pytest.raises(ModelLoadError, match=r"tokenizer_dir"):
        Emu35Adapter(twin).load(torch.device("cpu"), torch.float32)
    adapter = Emu35Adapter(twin.replace(options={**twin.options, "tokenizer_dir": str(elsewhere)}))
    adapter.load(torch.device("cpu"), torch.float32)
    assert adapter.tokenizer.n_codes == adapter.vq.n_embed
