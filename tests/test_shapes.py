"""The trained shapes Janus: semantics through the manager, the web app's endpoints and the CLI.

These tests use the checkpoint committed under assets/shapes-janus, loaded by the same Janus adapter
as the real Janus-Pro, so a regression anywhere in that path (prompt format, image-token offsets, CFG
rows, decoding) shows up as a wrong answer or a wrong picture.
"""

from __future__ import annotations

import base64
import io
import random

import numpy as np
import pytest
from PIL import Image

from umm.catalog import Catalog, load_catalog
from umm.manager import ModelManager
from umm.shapes import world
from umm.shapes.detect import detect
from umm.shapes.evaluate import heldout_scenes, judge

MODEL = "shapes-janus"
GREEN_SQUARE = (world.Item(0, "red", "circle", "small"), world.Item(4, "green", "square", "large"))
CAPTIONS = ["a red circle at the top left", "a large blue square at the center and a yellow triangle at the right",
            "a purple triangle at the bottom left", "a green circle at the top and an orange square at the bottom"]


@pytest.fixture(scope="module")
def shapes_catalog() -> Catalog:
    return Catalog([load_catalog().get(MODEL)])


@pytest.fixture(scope="module")
def shapes_manager(shapes_catalog: Catalog) -> ModelManager:
    return ModelManager(shapes_catalog, device="cpu")


def red_fraction(image: Image.Image) -> float:
    from umm.shapes.detect import colour_labels

    labels = colour_labels(np.asarray(image.convert("RGB")))
    shape_pixels = labels >= 0
    return float((labels == list(world.COLOURS).index("red")).sum() / max(1, shape_pixels.sum()))


# -- the world ---------------------------------------------------------------------------------
def test_detector_reads_rendered_scenes_exactly() -> None:
    rng = random.Random(3)
    for _ in range(40):
        scene = world.random_scene(rng)
        blobs = detect(world.render(scene))
        assert sorted((b.cell, b.colour, b.shape, b.size) for b in blobs) == sorted(
            (i.cell, i.colour, i.shape, i.size) for i in scene)


def test_heldout_split_is_disjoint_and_covers_every_word() -> None:
    rng = random.Random(4)
    train = [world.random_scene(rng) for _ in range(300)]
    assert not any(world.held_out(i.colour, i.shape, i.cell) for s in train for i in s)
    assert {i.colour for s in train for i in s} == set(world.COLOURS)
    assert {i.cell for s in train for i in s} == set(range(9))
    held = [world.random_scene(rng, "heldout") for _ in range(50)]
    assert all(any(world.held_out(i.colour, i.shape, i.cell) for i in s) for s in held)


def test_training_questions_practise_every_way_of_finding_an_item() -> None:
    """Questions that find an item by its shape, by its colour and by its place each get real practice.

    With targets picked uniformly, "what colour is the square?" in a scene of several shapes was one
    question in seventeen (5.8 %), and the model answered it about as well as by guessing among the
    items.
    """
    rng = random.Random(0)
    counts = {"by shape": 0, "by colour": 0, "by place": 0}
    total = 3000
    for _ in range(total):
        scene = world.random_scene(rng)
        q = world.random_question(scene, rng)
        if len(scene) < 2:
            continue
        if " at the " in q.text:
            counts["by place"] += 1
        elif q.kind == "colour":
            counts["by shape"] += 1
        elif q.kind in ("shape", "position"):
            counts["by colour"] += 1
    assert all(n / total > 0.1 for n in counts.values()), counts


def test_vision_warm_up_writes_the_words_of_each_image_token() -> None:
    """After the warm-up, a token of a red shape is nearer the LM's embedding of " red" than of other colours."""
    import torch
    import torch.nn.functional as F

    from umm.shapes.model import build
    from umm.shapes.train import _attributes, pixels, train_vision, word_vectors

    torch.manual_seed(0)
    model, processor = build(0)
    train_vision(model, processor.tokenizer, steps=120, batch=8, seed=0)
    colours = word_vectors(model, processor.tokenizer)[0][1:]  # "nothing" first
    scenes = [world.random_scene(random.Random(9)) for _ in range(8)]
    with torch.no_grad():
        features = model.model.get_image_features(pixels(scenes)).pooler_output.flatten(0, 1)
    targets = _attributes(scenes)[:, 0]
    shape_tokens = targets > 0
    nearest = (F.normalize(features[shape_tokens], dim=-1) @ F.normalize(colours, dim=-1).T).argmax(-1)
    assert (nearest == targets[shape_tokens] - 1).float().mean() > 0.9


def test_training_sequences_match_the_processor() -> None:
    """The trainer's token ids and pixels are what the processor (hence the adapter) produces."""
    from umm.shapes.model import build
    from umm.shapes.train import Batches, pixels

    _, processor = build()
    batches = Batches(processor, seed=0)
    ids, labels, _ = batches.understanding(1)
    answer_at = int((labels[0] != -100).nonzero()[0])
    prompt = processor.tokenizer.decode(ids[0, 1:answer_at]).split("\n")[1]
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    scene = (world.Item(0, "red", "circle", "small"),)
    inputs = processor(text=text, images=[world.render_pil(scene)], return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == ids[0, :answer_at].tolist()
    assert np.allclose(inputs["pixel_values"][0].numpy(), pixels([scene])[0].numpy(), atol=1e-6)


def test_multi_turn_training_chats_match_the_chat_template() -> None:
    """Later turns of a training chat are the app's multi-turn format, and every answer is a label."""
    from umm.shapes.model import build
    from umm.shapes.train import Batches

    _, processor = build()
    batches = Batches(processor, seed=1)
    for _ in range(20):
        ids, labels, _ = batches.understanding(1)
        turns = processor.tokenizer.decode(ids[0, 1:]).split(processor.tokenizer.eos_token)[:-1]
        if len(turns) > 1:
            break
    conversation = []
    for k, turn in enumerate(turns):
        question, answer = turn.removeprefix("<|User|>: ").split("\n\n<|Assistant|>: ")
        content = [{"type": "text", "text": question.split("\n")[-1]}]
        conversation += [{"role": "user", "content": ([{"type": "image"}] if k == 0 else []) + content},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    text = processor.apply_chat_template(conversation)
    scene = (world.Item(0, "red", "circle", "small"),)
    expected = processor(text=text, images=[world.render_pil(scene)], return_tensors="pt")["input_ids"][0]
    assert len(turns) > 1 and expected.tolist() == ids[0].tolist()
    answers = processor.tokenizer.decode(ids[0][labels[0] != -100]).split(processor.tokenizer.eos_token)[:-1]
    assert [a.strip() for a in answers] == [t.split("<|Assistant|>: ")[1] for t in turns]


# -- semantics through the manager -------------------------------------------------------------
def test_understanding_answers_about_a_rendered_image(shapes_manager: ModelManager) -> None:
    from umm.api import Model

    model = Model(MODEL, shapes_manager)
    image = world.render_pil(GREEN_SQUARE)
    assert model.chat("what colour is the square?", [image], seed=0).strip() == "green"
    assert model.chat("what shape is the red one?", [image], seed=0).strip() == "circle"
    assert model.chat("how many shapes are there?", [image], seed=0).strip() == "two"


def test_a_red_circle_is_a_red_round_blob(shapes_manager: ModelManager) -> None:
    from umm.api import Model

    result = Model(MODEL, shapes_manager).generate("a red circle", seed=0, num_images=4)
    assert len(result.images) == 4
    fractions = [red_fraction(image) for image in result.images]
    assert np.mean(fractions) > 0.8, fractions
    shapes = [detect(image)[0].shape if detect(image) else None for image in result.images]
    assert shapes.count("circle") >= 3, shapes


def test_seed_decides_the_image(shapes_manager: ModelManager) -> None:
    from umm.api import Model

    model = Model(MODEL, shapes_manager)
    one = model.generate("a blue triangle", seed=5, num_images=1).images[0]
    again = model.generate("a blue triangle", seed=5, num_images=1).images[0]
    other = model.generate("a blue triangle", seed=6, num_images=1).images[0]
    assert np.array_equal(np.asarray(one), np.asarray(again))
    assert not np.array_equal(np.asarray(one), np.asarray(other))


def test_guidance_improves_adherence(shapes_manager: ModelManager) -> None:
    """The catalog's CFG follows captions at least as well as CFG 1, and CFG 5 measurably changes the images.

    A flipped sign or a broken unconditional row fails the first (it pushes away from the caption); an
    ignored guidance scale fails the second. (The committed checkpoint follows held-out captions ~96 %
    without guidance, so its CFG 1.5 row ties CFG 1 rather than beating it; see the README table.)
    """
    from umm.api import Model

    model = Model(MODEL, shapes_manager)
    default = load_catalog().get(MODEL).capability("generate").defaults()["guidance_scale"]
    assert default > 1.0
    scenes = heldout_scenes(12, seed=2024)  # combinations never seen in training: where guidance matters
    scores = {}
    for cfg in (1.0, default, 5.0):
        total = 0.0
        for k, scene in enumerate(scenes):
            for image in model.generate(world.caption(scene), seed=k, num_images=2, guidance_scale=cfg).images:
                total += sum(judge(scene, image).values())
        scores[cfg] = total / (2 * len(scenes))
    assert scores[default] >= scores[1.0] - 0.05, scores
    assert abs(scores[5.0] - scores[1.0]) > 0.05, scores


def world_scene(caption: str) -> world.Scene:
    """The scene a full caption of this grammar describes (sizes default to large)."""
    items = []
    for part in caption.split(" and "):
        words = part.removeprefix("a ").removeprefix("an ").split(" at the ")
        names = words[0].split()
        size = names[0] if names[0] in world.SIZES else "large"
        colour, shape = names[-2], names[-1]
        items.append(world.Item(world.POSITIONS.index(words[1]), colour, shape, size))
    return tuple(sorted(items))


# -- the web app and the CLI -------------------------------------------------------------------
def answer(manager: ModelManager, image: Image.Image, question: str) -> str:
    from umm.api import Model

    return Model(MODEL, manager).chat(question, [image], seed=0)


def test_the_web_app_endpoints(shapes_manager: ModelManager) -> None:
    """The app's endpoints give exactly what the manager gives for the same request."""
    pytest.importorskip("gradio")
    from conftest import served_app
    from gradio_client import Client

    from umm.api import Model

    image = world.render_pil(GREEN_SQUARE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    expected_text = answer(shapes_manager, image, "what colour is the square?")
    expected = Model(MODEL, shapes_manager).generate("a red circle at the top left", seed=1, num_images=2).images
    with served_app(shapes_manager) as app:
        client = Client(app.local_url, verbose=False)
        reply = client.predict(model_id=MODEL, message="what colour is the square?",
                               images=[base64.b64encode(buffer.getvalue()).decode()], params={}, seed=0,
                               api_name="/v1_chat")
        out = client.predict(model_id=MODEL, prompt="a red circle at the top left", params={"num_images": 2},
                             seed=1, api_name="/v1_generate")
    assert reply["text"] == expected_text and reply["text"].strip() in {*world.COLOURS}
    images = [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB") for b in out["images_png_base64"]]
    assert [im.size for im in images] == [(96, 96), (96, 96)]
    pairs = zip(images, expected, strict=True)
    assert all(np.array_equal(np.asarray(a), np.asarray(b.convert("RGB"))) for a, b in pairs)


def test_the_cli(tmp_path, capsys, shapes_manager: ModelManager) -> None:
    from umm.cli import main

    image = tmp_path / "scene.png"
    world.render_pil(GREEN_SQUARE).save(image)
    assert main(["chat", "--model", MODEL, "--prompt", "what colour is the square?", "--image", str(image),
                 "--seed", "0"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[0]
    assert printed.strip() == answer(shapes_manager, Image.open(image), "what colour is the square?").strip()
    out = tmp_path / "gen.png"
    assert main(["generate", "--model", MODEL, "--prompt", "a red circle", "--seed", "3", "-p", "num_images=1",
                 "--out", str(out)]) == 0
    from umm.api import Model

    expected = Model(MODEL, shapes_manager).generate("a red circle", seed=3, num_images=1).images[0]
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(expected.convert("RGB")))
