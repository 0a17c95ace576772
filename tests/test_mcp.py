"""``python app.py --mcp``: generate, edit and chat as MCP tools, called by a real MCP client over loopback."""

from __future__ import annotations

import ast
import asyncio
import base64
import io
import json

import pytest

pytest.importorskip("mcp")
from conftest import free_port
from PIL import Image

from umm.manager import ModelManager


@pytest.fixture(scope="module")
def mcp_url(tiny_catalog):
    from umm.ui.app import build_app, launch_kwargs

    app = build_app(ModelManager(tiny_catalog, device="cpu"), mcp=True)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
               mcp_server=True, **launch_kwargs(2_000_000))
    try:
        yield f"{app.local_url}gradio_api/mcp/"
    finally:
        app.close()


async def _session(url: str, work):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        return await work(session)


def test_tools_are_generate_edit_and_chat_with_typed_schemas(mcp_url: str, tiny_catalog) -> None:
    async def work(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"v1_generate", "v1_edit", "v1_chat"}
        schema = tools["v1_generate"].inputSchema
        assert schema["required"] == ["model_id", "prompt"] and schema["properties"]["seed"]["type"] == "integer"
        assert "catalog" in schema["properties"]["model_id"]["description"]
        model_id = next(i for i in tiny_catalog.ids("generate"))
        result = await session.call_tool("v1_generate", {"model_id": model_id, "prompt": "a red cube",
                                                         "params": {"num_images": 1}, "seed": 5})
        return result

    result = asyncio.run(_session(mcp_url, work))
    assert not result.isError
    text = result.content[0].text
    payload = json.loads(text) if text.lstrip().startswith('{"') else ast.literal_eval(text)  # gradio sends a repr
    png = Image.open(io.BytesIO(base64.b64decode(payload["images_png_base64"][0])))
    assert json.loads(png.info["umm"])["seed"] == 5


def test_a_bad_tool_call_is_an_error_result_not_a_crash(mcp_url: str) -> None:
    async def work(session):
        return await session.call_tool("v1_generate", {"model_id": "no-such-model", "prompt": "x"})

    result = asyncio.run(_session(mcp_url, work))
    assert result.isError and "Unknown model" in result.content[0].text
