"""The tiny TokenFlow twin in the web app: Text → image (with the loop strategy) and Compare."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

gradio = pytest.importorskip("gradio")
from conftest import served_app  # noqa: E402
from gradio_client import Client  # noqa: E402

from umm.catalog import Catalog, load_catalog  # noqa: E402
from umm.manager import ModelManager  # noqa: E402
from umm.tiny import build_tiny_catalog  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    twin = build_tiny_catalog(load_catalog(), tmp_path_factory.mktemp("tiny"), {"tokenflow"}).get("tiny-tokenflow")
    other = twin.replace(id="tiny-tokenflow-recompute", options={**twin.options, "kv_cache": False})
    with served_app(ModelManager(Catalog([twin, other]), device="cpu")) as app:
        yield Client(app.local_url, verbose=False)


def test_text_to_image_tab(client):
    gallery, summary, settings, _, _ = client.predict(
        model_id="tiny-tokenflow", prompt="a cat on a red chair", seed=5, num_images=2, loop_strategy=2,
        api_name="/generate",
    )
    assert len(gallery) == 2 and settings["params"]["loop_strategy"] == 2 and "seed **5**" in summary
    assert settings["negative_prompt"].startswith("lowres")  # the official one when the box is empty


def test_compare_tab_cache_and_recompute_agree(client):
    out = client.predict(task="generate", prompt="a lighthouse", image=None,
                         model_ids=["tiny-tokenflow", "tiny-tokenflow-recompute"], seed=11, api_name="/compare")
    columns = [out[i:i + 4] for i in range(0, 8, 4)]
    assert all(c[3].startswith("✓") for c in columns)
    images = [c[1][0]["image"] if isinstance(c[1][0], dict) else c[1][0][0] for c in columns]
    pixels = [np.asarray(Image.open(path).convert("RGB")) for path in images]  # files differ: settings embedded
    assert np.array_equal(*pixels)
