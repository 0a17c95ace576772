"""Stop and disconnect through the web app: the lane is free again within about one step or token."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("gradio")
import httpx
from conftest import served_app
from gradio_client import Client

from umm.manager import ModelManager

LONG_TOKENS = 2000  # greedy tiny models run ~3 s for this (no early end of sequence): long enough to stop


def _wait(predicate, timeout: float = 30.0) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def served(tiny_catalog):
    manager = ModelManager(tiny_catalog, device="cpu")
    with served_app(manager) as app:
        yield app, manager


def _chat_model(manager: ModelManager) -> str:
    return manager.catalog.ids("understand")[0]


def test_stop_button_frees_the_lane_mid_stream(served):
    app, manager = served
    client = Client(app.local_url, verbose=False)
    model_id = _chat_model(manager)
    job = client.submit(model_id=model_id, message={"text": "Tell me a long story.", "files": []}, history=[],
                        seed=1, max_new_tokens=LONG_TOKENS, temperature=0.0, api_name="/chat")
    _wait(lambda: manager._lane.locked() and manager.resident_id == model_id)
    time.sleep(0.2)  # tokens are streaming now
    assert manager._lane.locked(), "the reply ended before the stop: the test proves nothing"
    client.predict(api_name="/chat_stop")
    freed = _wait(lambda: not manager._lane.locked(), timeout=10)
    assert freed < 2.0, f"lane still held {freed:.2f} s after stop"
    job.cancel()
    ok = client.predict(model_id=model_id, message={"text": "hi", "files": []}, history=[], seed=2,
                        max_new_tokens=4, api_name="/chat")
    assert ok[0][-1]["role"] == "assistant"


def test_stop_button_frees_the_lane_mid_generation(served):
    app, manager = served
    model_id = next((i for i in manager.catalog.ids("generate") if "omnigen2" in i), None)
    if model_id is None:
        pytest.skip("needs a diffusion model (many steps) to stop mid-generation")
    client = Client(app.local_url, verbose=False)
    job = client.submit(model_id=model_id, prompt="a slow painting", seed=1, steps=100, width=128, height=128,
                        num_images=1, max_pixels=16384, api_name="/generate")
    _wait(lambda: manager._lane.locked() and manager.resident_id == model_id)
    time.sleep(0.5)
    assert manager._lane.locked(), "the generation ended before the stop: the test proves nothing"
    client.predict(api_name="/generate_stop")
    freed = _wait(lambda: not manager._lane.locked(), timeout=10)
    assert freed < 2.0, f"lane still held {freed:.2f} s after stop"
    job.cancel()


def test_client_disconnect_mid_stream_frees_the_lane(served):
    """A browser tab closed mid-reply: the server notices the dropped stream and stops the run."""
    app, manager = served
    model_id = _chat_model(manager)
    config = httpx.get(f"{app.local_url}config").json()
    fn_index = next(i for i, dep in enumerate(config["dependencies"]) if dep.get("api_name") == "chat")
    component_ids = config["dependencies"][fn_index]["inputs"]
    by_id = {c["id"]: c for c in config["components"]}
    values = []
    for cid in component_ids:
        props = by_id[cid].get("props", {})
        name = props.get("elem_id") or ""
        value = props.get("value")
        if name.endswith("model"):
            value = model_id
        elif by_id[cid]["type"] == "multimodaltextbox":
            value = {"text": "Tell me a long story.", "files": []}
        elif by_id[cid]["type"] == "chatbot":
            value = []
        elif name.endswith("max_new_tokens"):
            value = LONG_TOKENS
        elif name.endswith("temperature"):
            value = 0.0
        values.append(value)
    session = "disconnect-test"
    api = f"{app.local_url}gradio_api"
    joined = httpx.post(f"{api}/queue/join", json={"data": values, "fn_index": fn_index, "session_hash": session,
                                                  "event_data": None, "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{api}/queue/data", params={"session_hash": session}, timeout=30) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                break  # the reply is streaming: drop the connection here
    assert manager._lane.locked(), "the reply ended before the disconnect: the test proves nothing"
    freed = _wait(lambda: not manager._lane.locked(), timeout=15)
    assert freed < 5.0, f"lane still held {freed:.2f} s after the client went away"


def test_clear_mid_stream_stops_the_run_and_clears(served):
    app, manager = served
    client = Client(app.local_url, verbose=False)
    model_id = _chat_model(manager)
    job = client.submit(model_id=model_id, message={"text": "Tell me a long story.", "files": []}, history=[],
                        seed=1, max_new_tokens=LONG_TOKENS, temperature=0.0, api_name="/chat")
    _wait(lambda: manager._lane.locked() and manager.resident_id == model_id)
    time.sleep(0.2)
    assert manager._lane.locked(), "the reply ended before the clear: the test proves nothing"
    history, box = client.predict(api_name="/chat_clear")
    assert history == [] and not (box or {}).get("text")
    freed = _wait(lambda: not manager._lane.locked(), timeout=10)
    assert freed < 2.0, f"lane still held {freed:.2f} s after clear"
    job.cancel()


def test_stop_marks_the_partial_reply_and_a_failed_turn_keeps_the_text(served):
    from gradio_client.exceptions import AppError

    from umm.errors import AdapterError

    app, manager = served
    client = Client(app.local_url, verbose=False)
    partial = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "Once upon"}]}]
    marked = client.predict(partial, api_name="/chat_stop")
    assert "Once upon" in str(marked[-1]["content"]) and "Stopped" in str(marked[-1]["content"])
    assert client.predict(api_name="/generate_stop") == "■ Stopped."

    def fail(event, spec):
        if event == "run":
            raise AdapterError("the model broke")

    manager.fault_hook = fail
    try:
        earlier = [{"role": "user", "content": [{"type": "text", "text": "first"}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "answer"}]}]
        job = client.submit(model_id=_chat_model(manager), message={"text": "keep me", "files": []},
                            history=earlier, seed=1, max_new_tokens=4, api_name="/chat")
        with pytest.raises(AppError, match="the model broke"):
            job.result()
    finally:
        manager.fault_hook = None
    history, box = job.outputs()[-1]
    assert len(history) == 2 and [m["role"] for m in history] == ["user", "assistant"]  # no empty bubble
    assert box["text"] == "keep me"  # the typed message is back in the box
