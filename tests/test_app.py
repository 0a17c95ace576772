"""The web app end to end over HTTP: gradio_client against a launched app on the tiny catalog.

One app is launched per module (launching costs ~2 s); every test makes its own requests, and each bad
input is followed by a good one to show the app (and the manager's lane) recovered.
"""

from __future__ import annotations

import logging
import socket
import time
import zipfile
from pathlib import Path

import pytest

gradio = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError, ValidationError  # noqa: E402

from umm.catalog import Catalog  # noqa: E402
from umm.images import read_settings  # noqa: E402
from umm.manager import ModelManager  # noqa: E402

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
REAL_ID = "janus-pro-1b"  # in the catalog but never downloaded in tests: its runs fail cleanly


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_catalog(tiny_catalog: Catalog, real_catalog: Catalog) -> Catalog:
    return Catalog([*tiny_catalog, real_catalog.get(REAL_ID)])


@pytest.fixture(scope="module")
def served(app_catalog: Catalog):
    from umm.ui.app import build_app, launch_kwargs

    manager = ModelManager(app_catalog, device="cpu")
    app = build_app(manager, max_upload_bytes=2_000_000)
    app.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
        **launch_kwargs(2_000_000),
    )
    try:
        yield app, manager
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(served) -> Client:
    app, _ = served
    return Client(app.local_url, verbose=False)


def first(catalog: Catalog, capability: str) -> str:
    ids = [i for i in catalog.ids(capability) if i.startswith("tiny-")]
    if not ids:
        pytest.skip(f"no tiny model can {capability}")
    return ids[0]


def image_paths(gallery: list) -> list[str]:
    return [item["image"] if isinstance(item, dict) else item[0] for item in gallery]


def reply_text(message: dict) -> str:
    content = message["content"]
    parts = content if isinstance(content, list) else [content]
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in parts)


def test_chat_streams_tokens(client: Client, app_catalog: Catalog) -> None:
    model_id = first(app_catalog, "understand")
    started = time.perf_counter()
    job = client.submit(
        model_id=model_id, message={"text": "What is in this picture?", "files": [handle_file(ASSETS / "cat.png")]},
        history=[], seed=1, max_new_tokens=12, api_name="/chat",
    )
    first_token = None
    updates = 0
    for history, _box in job:
        updates += 1
        if first_token is None and history and reply_text(history[-1]):
            first_token = time.perf_counter() - started
    history = job.outputs()[-1][0]
    log.info("chat: first streamed token after %.3f s, %d updates", first_token or -1, updates)
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert any(isinstance(p, dict) and p.get("type") == "file" for p in history[0]["content"])
    assert reply_text(history[-1])
    assert len(job.outputs()) >= 2  # streamed: an empty placeholder first, then the text

    # a second turn carries the (text) history; regenerate answers the last user turn again
    history = [{"role": m["role"], "content": [{"type": "text", "text": reply_text(m)}]} for m in history]
    job = client.submit(model_id=model_id, message={"text": "and the colours?", "files": []}, history=history,
                        seed=2, max_new_tokens=6, api_name="/chat")
    history = job.result()[0]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    again = client.predict(model_id=model_id, history=history, seed=3, max_new_tokens=6, api_name="/chat_regenerate")
    assert len(again[0]) == 4 and reply_text(again[0][-1])


def test_generate_reports_seed_and_embeds_settings(client: Client, app_catalog: Catalog) -> None:
    model_id = first(app_catalog, "generate")
    gallery, summary, settings, snippet, files = client.predict(
        model_id=model_id, prompt="a cat on a red chair", seed=7, num_images=2, api_name="/generate"
    )
    assert len(image_paths(gallery)) == 2
    assert settings["seed"] == 7 and settings["model_id"] == model_id and "seed **7**" in summary
    embedded = read_settings(files[0])
    assert embedded["seed"] == 7 and embedded["params"]["num_images"] == 2
    assert "api_name='/generate'" in snippet and "seed=7" in snippet

    _, _, random_settings, _, _ = client.predict(model_id=model_id, prompt="a cat", seed=-1, num_images=1,
                                                 api_name="/generate")
    assert random_settings["seed"] >= 0  # the seed actually used is reported


def test_model_switching(client: Client, app_catalog: Catalog, served) -> None:
    _, manager = served
    ids = [i for i in app_catalog.ids("generate") if i.startswith("tiny-")][:2]
    if len(ids) < 2:
        pytest.skip("needs two tiny models that generate")
    for model_id in [*ids, ids[0]]:
        settings = client.predict(model_id=model_id, prompt="a dog", seed=1, num_images=1, api_name="/generate")[2]
        assert settings["model_id"] == model_id
        assert manager.resident_id == model_id


def test_edit(client: Client, app_catalog: Catalog) -> None:
    editors = [i for i in app_catalog.ids("edit") if i.startswith("tiny-")]
    if not editors:
        pytest.skip("no tiny model in the catalog can edit (the Edit tab shows how to get one)")
    _, gallery, _, settings, _, files = client.predict(
        model_id=editors[0], image=handle_file(ASSETS / "landscape.png"), extra_images=None,
        instruction="make it winter", seed=5, steps=2, width=64, height=64, max_pixels=4096, api_name="/edit",
    )
    assert image_paths(gallery) and settings["seed"] == 5 and settings["task"] == "edit"
    assert read_settings(files[0])["model_id"] == editors[0]


def test_compare_isolates_failures_and_exports(client: Client, app_catalog: Catalog) -> None:
    model_id = first(app_catalog, "generate")
    out = client.predict(task="generate", prompt="a lighthouse", image=None, model_ids=[REAL_ID, model_id],
                         seed=11, api_name="/compare")
    columns, archive = [out[i:i + 4] for i in range(0, 16, 4)], out[16]
    by_title = {c[0].strip("*"): c for c in columns}
    assert image_paths(by_title[model_id][1]) and by_title[model_id][3].startswith("✓")
    assert by_title[REAL_ID][3].startswith("✗") and "not in the local Hugging Face cache" in by_title[REAL_ID][3]
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "settings.json" in names and any(n.startswith(f"{model_id}/") for n in names)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "   ", "api_name": "/generate"}, "prompt is empty"),
        ({"prompt": "a cat", "num_images": 99, "api_name": "/generate"}, "Images must be between 1 and"),
        ({"prompt": "a cat", "seed": -5, "api_name": "/generate"}, "Seed must be"),
        ({"message": {"text": "", "files": []}, "history": [], "api_name": "/chat"}, "message is empty"),
        ({"message": {"text": "hi", "files": ["BROKEN"]}, "history": [], "api_name": "/chat"}, "not an image"),
        ({"task": "generate", "prompt": "x", "image": None, "model_ids": ["ONE"], "api_name": "/compare"}, "Pick 2"),
        ({"model_id": "no-such-model", "prompt": "a cat", "api_name": "/generate"}, "Unknown model"),
    ],
    ids=["empty-prompt", "out-of-range", "bad-seed", "empty-message", "unreadable-image", "one-model", "bad-model"],
)
def test_bad_input_is_rejected_before_the_queue(client, app_catalog, tmp_path, kwargs, message) -> None:
    kwargs = dict(kwargs)
    if kwargs["api_name"] in ("/generate", "/chat"):
        kwargs.setdefault("model_id", first(app_catalog, "generate" if kwargs["api_name"] == "/generate" else
                                            "understand"))
    if "message" in kwargs and kwargs["message"]["files"]:
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"this is not a png")
        kwargs["message"] = {"text": "hi", "files": [handle_file(broken)]}
    if kwargs.get("model_ids") == ["ONE"]:
        kwargs["model_ids"] = [first(app_catalog, "generate")]
    with pytest.raises(ValidationError, match=message):
        client.predict(**kwargs)
    ok = client.predict(model_id=first(app_catalog, "generate"), prompt="ok", seed=1, num_images=1,
                        api_name="/generate")
    assert ok[2]["seed"] == 1


def test_run_error_becomes_a_message_and_the_next_request_works(client: Client, app_catalog: Catalog) -> None:
    with pytest.raises(AppError, match="not in the local Hugging Face cache"):
        client.predict(model_id=REAL_ID, prompt="a cat", seed=1, api_name="/generate")
    ok = client.predict(model_id=first(app_catalog, "generate"), prompt="ok", seed=2, num_images=1,
                        api_name="/generate")
    assert ok[2]["seed"] == 2


def test_public_mode_hides_load_and_unload(app_catalog: Catalog) -> None:
    from umm.ui.app import build_app

    def visibility(public: bool) -> dict[str, str]:
        app = build_app(ModelManager(app_catalog, device="cpu"), public=public)
        return {fn.api_name: fn.api_visibility for fn in app.fns.values() if fn.api_name}

    public, local = visibility(True), visibility(False)
    assert public["load_model"] == "private" and public["unload_model"] == "private"
    assert local["load_model"] == "public"
    assert all(local.get(name) == "public" for name in ("chat", "generate", "edit", "compare"))


def test_importing_the_ui_builds_nothing() -> None:
    import umm.ui
    import umm.ui.main

    assert callable(umm.ui.main.main) and not hasattr(umm.ui, "app_instance")


def test_v1_endpoints_take_params_as_a_dict_with_model_defaults(client: Client, app_catalog: Catalog) -> None:
    import base64
    import io

    from PIL import Image

    model_id = first(app_catalog, "generate")
    spec = app_catalog.get(model_id)
    out = client.predict(model_id=model_id, prompt="a cat", params={"num_images": 1}, seed=3, api_name="/v1_generate")
    defaults = spec.capability("generate").defaults()
    assert out["info"]["params"] == {**defaults, "num_images": 1}  # the rest: this model's own defaults
    assert out["info"]["seed"] == 3 and out["info"]["model_id"] == model_id
    png = base64.b64decode(out["images_png_base64"][0])
    assert Image.open(io.BytesIO(png)).info["umm"]

    chat_id = first(app_catalog, "understand")
    reply = client.predict(model_id=chat_id, message="What is this?", images=[base64.b64encode(png).decode()],
                           params={"max_new_tokens": 4}, seed=1, api_name="/v1_chat")
    assert reply["model_id"] == chat_id and reply["params"]["max_new_tokens"] == 4

    with pytest.raises(AppError, match="between 1 and"):
        client.predict(model_id=model_id, prompt="a cat", params={"num_images": 99}, api_name="/v1_generate")
    with pytest.raises(AppError, match="not valid base64"):
        client.predict(model_id=chat_id, message="hi", images=["%%%"], api_name="/v1_chat")


def test_compare_chat_runs_every_model_to_the_end(client: Client, app_catalog: Catalog) -> None:
    """A reply that ends normally is not a Stop: every column answers (issue: only the first one ran)."""
    ids = [i for i in app_catalog.ids("understand") if i.startswith("tiny-")][:2]
    if len(ids) < 2:
        pytest.skip("needs two tiny models that understand")
    out = client.predict(task="understand", prompt="What is in this picture?",
                         image=handle_file(ASSETS / "cat.png"), model_ids=ids, seed=4, api_name="/compare")
    columns = [out[i:i + 4] for i in range(0, 16, 4)][:2]
    for title, _gallery, reply, status in columns:
        assert status.startswith("✓"), (title, status)
        assert reply, title


def test_omitted_controls_take_the_chosen_models_defaults(client: Client, app_catalog: Catalog) -> None:
    """Leaving a control out of a tab endpoint means the chosen model's default, not another model's."""
    chosen = {}
    for model_id in (i for i in app_catalog.ids("generate") if i.startswith("tiny-")):
        chosen.setdefault(tuple(sorted(app_catalog.get(model_id).capability("generate").defaults().items(),
                                       key=str)), model_id)
    if len(chosen) < 2:
        pytest.skip("needs two tiny generators with different defaults")
    for model_id in list(chosen.values())[:3]:
        settings = client.predict(model_id=model_id, prompt="a cat", seed=1, api_name="/generate")[2]
        assert settings["params"] == app_catalog.get(model_id).capability("generate").defaults(), model_id
    chat_id = first(app_catalog, "understand")
    history = client.predict(model_id=chat_id, message={"text": "hi", "files": []}, history=[], seed=1,
                             api_name="/chat")[0]
    assert reply_text(history[-1])


def _run_snippet(snippet: str):
    scope: dict = {"print": lambda *a, **k: None}
    exec(compile(snippet, "<snippet>", "exec"), scope)  # the snippet exactly as the page shows it
    return scope["result"]


def _pixels(path: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("tab", ["generate", "edit"])
def test_copy_as_api_call_snippets_reproduce_the_run(client: Client, app_catalog: Catalog, tab: str) -> None:
    import numpy as np

    if tab == "generate":
        model_id = first(app_catalog, "generate")
        out = client.predict(model_id=model_id, prompt="a red cube", seed=9, num_images=1, api_name="/generate")
        gallery, settings, snippet = out[0], out[2], out[3]
    else:
        editors = [i for i in app_catalog.ids("edit") if i.startswith("tiny-")]
        if not editors:
            pytest.skip("no tiny editor")
        spec = app_catalog.get(editors[0])
        extra = [handle_file(ASSETS / "cat.png")] if (spec.capability("edit").max_images or 1) > 1 else None
        out = client.predict(model_id=editors[0], image=handle_file(ASSETS / "landscape.png"), extra_images=extra,
                             instruction="make it winter", seed=5, steps=2, width=64, height=64, max_pixels=4096,
                             api_name="/edit")
        gallery, settings, snippet = out[1], out[3], out[4]
        assert "extra_images=" in snippet and "input.png" not in snippet
    again = _run_snippet(snippet)
    again_gallery, again_settings = (again[0], again[2]) if tab == "generate" else (again[1], again[3])
    assert again_settings["seed"] == settings["seed"] and again_settings["params"] == settings["params"]
    assert again_settings.get("input_images", None) == settings.get("input_images", None)
    assert np.array_equal(_pixels(image_paths(again_gallery)[0]), _pixels(image_paths(gallery)[0]))


def test_multi_turn_chat_with_images_round_trips_over_the_api(served, app_catalog: Catalog) -> None:
    """The history /chat returns goes back in as it came (download_files=False), or with handle_file."""
    import base64

    app, _ = served
    model_id = first(app_catalog, "understand")
    raw = Client(app.local_url, verbose=False, download_files=False)
    history = raw.predict(model_id=model_id, message={"text": "What is this?", "files": [handle_file(
        ASSETS / "cat.png")]}, history=[], seed=1, max_new_tokens=4, api_name="/chat")[0]
    history = raw.predict(model_id=model_id, message={"text": "And now?", "files": []}, history=history, seed=2,
                          max_new_tokens=4, api_name="/chat")[0]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]

    downloading = Client(app.local_url, verbose=False)  # files come back as local paths: wrap them again
    history = downloading.predict(model_id=model_id, message={"text": "What is this?", "files": [handle_file(
        ASSETS / "cat.png")]}, history=[], seed=1, max_new_tokens=4, api_name="/chat")[0]
    for message in history:
        for part in message["content"]:
            if part.get("type") == "file":
                part["file"] = handle_file(part["file"])
    history = downloading.predict(model_id=model_id, message={"text": "And now?", "files": []}, history=history,
                                  seed=2, max_new_tokens=4, api_name="/chat")[0]
    assert len(history) == 4

    png = base64.b64encode((ASSETS / "cat.png").read_bytes()).decode()
    first_turn = raw.predict(model_id=model_id, message="What is this?", images=[png], params={"max_new_tokens": 4},
                             seed=1, api_name="/v1_chat")
    second = raw.predict(model_id=model_id, message="And the colours?", history=first_turn["history"],
                         params={"max_new_tokens": 4}, seed=1, api_name="/v1_chat")
    assert [t["role"] for t in second["history"]] == ["user", "assistant", "user", "assistant"]
    assert second["history"][0]["images"] == [png] and second["model_id"] == model_id
    with pytest.raises(AppError, match=r"history\[0\] must be a dict"):
        raw.predict(model_id=model_id, message="hi", history=["nope"], api_name="/v1_chat")


def _components(app, cls):
    return [b for b in app.blocks.values() if isinstance(b, cls)]


def test_first_run_without_weights(real_catalog: Catalog, tiny_catalog: Catalog) -> None:
    """Nothing downloaded: a banner says how to get models, pickers mark them, nothing preselected to fail."""
    from umm.ui import info
    from umm.ui.app import build_app

    manager = ModelManager(real_catalog, device="cpu")
    app = build_app(manager)
    texts = [getattr(b, "value", "") or "" for b in _components(app, gradio.Markdown)]
    banner = next(t for t in texts if "No model weights are downloaded yet" in t)
    assert "python -m umm fetch" in banner and "--demo" in banner
    hub_ids = [s.id for s in real_catalog if not s.is_local]
    assert all("not downloaded" in info.label(real_catalog.get(i), manager) for i in hub_ids)
    assert all(i not in info.runnable_ids(manager, "generate", 4) for i in hub_ids)
    assert "python -m umm fetch" in info.card(manager, hub_ids[0])

    both = ModelManager(Catalog([*real_catalog, *tiny_catalog]), device="cpu")
    for capability in ("understand", "generate", "edit"):
        chosen = info.default_model(both, capability)
        if chosen is not None and any(s.can(capability) for s in tiny_catalog):
            assert info.runnable(both, chosen), capability
        assert all(info.runnable(both, i) for i in info.runnable_ids(both, capability, 2))
    labels = [lbl for lbl, _ in info.choices(both, "generate")]
    assert not labels[0].endswith("not downloaded") and labels[-1].endswith("not downloaded")


def test_picking_a_model_that_is_not_downloaded_loads_nothing(client: Client, served) -> None:
    _, manager = served
    before = manager.resident_id
    card = client.predict(REAL_ID, api_name="/gen_load_model")
    assert "python -m umm fetch" in card and manager.resident_id == before
    rows, resident = client.predict(REAL_ID, api_name="/load_model")
    assert rows["data"] if isinstance(rows, dict) else rows  # the table is still there after a failed load
    assert "✗" in resident and "umm fetch" in resident


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "a cat", "seed": "seven"}, "Seed must be a whole number"),
        ({"prompt": "a cat", "params": [1, 2]}, "params must be a mapping"),
        ({"prompt": "a cat", "params": {"no_such": 1}}, "Unknown parameter"),
    ],
    ids=["seed-nan", "params-list", "params-unknown"],
)
def test_v1_errors_name_the_bad_field(client: Client, app_catalog: Catalog, kwargs, message) -> None:
    with pytest.raises(AppError, match=message):
        client.predict(model_id=first(app_catalog, "generate"), api_name="/v1_generate", **kwargs)


def test_seed_check_refuses_non_finite_numbers() -> None:
    from umm.ui.checks import FieldError, check_seed

    for bad in (float("nan"), float("inf")):
        with pytest.raises(FieldError, match="Seed must be a whole number"):
            check_seed(bad)


def test_an_unused_negative_prompt_is_reported(client: Client, app_catalog: Catalog) -> None:
    model_id = next((i for i in app_catalog.ids("generate") if i.startswith("tiny-")
                     and not app_catalog.get(i).options.get("negative_prompt")), None)
    if model_id is None:
        pytest.skip("every tiny generator takes a negative prompt")
    out = client.predict(model_id=model_id, prompt="a cat", negative_prompt="blurry", params={"num_images": 1},
                         seed=1, api_name="/v1_generate")
    assert any("negative prompt" in note for note in out["info"]["notes"])
    assert out["info"]["negative_prompt"] == ""


def test_pngs_carry_a1111_parameters_too(tmp_path) -> None:
    from PIL import Image

    from umm.images import save_png
    from umm.types import RunInfo

    info = RunInfo("omnigen2", "abcdef1234567", "generate", 7,
                   {"steps": 30, "text_guidance_scale": 5.0, "width": 512, "height": 384, "num_images": 2},
                   prompt="a cat, on a chair", negative_prompt="blurry")
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "x.png", info)
    text = Image.open(path).info["parameters"]
    assert text.splitlines()[:2] == ["a cat, on a chair", "Negative prompt: blurry"]
    assert text.splitlines()[2] == ("Steps: 30, CFG scale: 5.0, Seed: 7, Size: 512x384, Model: omnigen2, "
                                    "Model hash: abcdef1234, num_images: 2")
    assert read_settings(path)["seed"] == 7


def test_compare_arena_votes_are_recorded_and_reveal_the_models(served, app_catalog, tmp_path, monkeypatch):
    import json

    app, _ = served
    monkeypatch.setenv("UMM_VOTES_FILE", str(tmp_path / "votes.jsonl"))
    client = Client(app.local_url, verbose=False)
    ids = [i for i in app_catalog.ids("generate") if i.startswith("tiny-")][:2]
    out = client.predict(task="generate", prompt="a lighthouse", image=None, model_ids=ids, seed=3,
                         images_per_model=2, anonymous=True, api_name="/compare")
    titles = [out[i] for i in range(0, 16, 4)][:2]
    assert titles == ["**Model A**", "**Model B**"]  # names hidden until the vote
    per_column = [len(image_paths(out[i])) for i in (1, 5)]
    assert all(n in (1, 2) for n in per_column)
    revealed = client.predict(choice="B", api_name="/compare_vote")
    line = json.loads((tmp_path / "votes.jsonl").read_text().splitlines()[-1])
    assert sorted(line["models"]) == sorted(ids) and line["vote"] == "B" and line["winner"] == line["models"][1]
    assert line["seed"] == 3 and line["prompt"] == "a lighthouse" and len(line["settings"]) == 2
    assert any(line["winner"] in str(part) for part in revealed)


def test_a_painted_region_becomes_the_picture_and_its_mask() -> None:
    from PIL import Image, ImageDraw

    from umm.ui.tabs.edit import painted_inputs

    background = Image.new("RGB", (64, 48), (10, 200, 30))
    layer = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([8, 8, 23, 19], fill=(255, 255, 255, 255))
    picture, masks = painted_inputs({"background": background, "layers": [layer], "composite": None})
    assert Image.open(picture).size == (64, 48)
    mask = Image.open(masks[0])
    assert mask.getpixel((10, 10)) == 255 and mask.getpixel((40, 40)) == 0
    assert painted_inputs({"background": background, "layers": [], "composite": None})[1] is None


def test_housekeeping_prunes_old_outputs_and_names_the_device(tmp_path, monkeypatch) -> None:
    import os

    import torch

    from umm.devices import describe
    from umm.ui import outputs

    monkeypatch.setattr(outputs, "OUTPUT_ROOT", tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    now = 1_000_000_000.0
    os.utime(old, (now - 2 * outputs.KEEP_SECONDS, now - 2 * outputs.KEEP_SECONDS))
    os.utime(new, (now - 60, now - 60))
    assert outputs.prune_outputs(now, force=True) == 1
    assert not old.exists() and new.exists()
    assert describe(torch.device("cpu")).startswith("CPU") and "GB RAM free" in describe(torch.device("cpu"))


@pytest.mark.parametrize("where", ["image", "extra_images"])
def test_edit_upload_errors_are_one_clean_line(client: Client, app_catalog: Catalog, tmp_path, where) -> None:
    editor = first(app_catalog, "edit")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    good = handle_file(ASSETS / "landscape.png")
    kwargs = {"image": handle_file(broken), "extra_images": None} if where == "image" else {
        "image": good, "extra_images": [handle_file(broken)]}
    with pytest.raises(ValidationError) as err:
        client.predict(model_id=editor, instruction="x", seed=1, api_name="/edit", **kwargs)
    text = str(err.value)
    assert f"{where}: The file is not an image" in text and "/tmp" not in text and "Error" not in text.split(":", 1)[1]


def test_the_page_and_its_config_are_gzipped_and_event_streams_are_not(client: Client, served) -> None:
    import urllib.request

    app, _ = served
    sizes = {}
    for encoding in ("identity", "gzip"):
        request = urllib.request.Request(app.local_url.rstrip("/") + "/config", headers={"Accept-Encoding": encoding})
        with urllib.request.urlopen(request) as response:
            sizes[encoding] = len(response.read())
            assert response.headers.get("Content-Encoding") == (None if encoding == "identity" else "gzip")
    assert sizes["gzip"] * 4 < sizes["identity"], sizes
    # event streams (queue updates, heartbeats) stay plain, so they are not buffered by the compressor
    request = urllib.request.Request(app.local_url.rstrip("/") + "/gradio_api/heartbeat/test-gzip",
                                     headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers.get("Content-Type", "").startswith("text/event-stream")
        assert response.headers.get("Content-Encoding") is None
