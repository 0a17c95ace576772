"""The shapes world: deterministic scenes, their captions, questions and the held-out split.

Scenes are aligned with the model's image tokens: a 96 px image is a 3x3 grid of 32 px cells and
every shape is centred on its cell, which is the corner of four 16 px VQ tokens. The VQ tokenizer
then sees the same few patches everywhere, so a small model learns it in minutes.

Held out: one grid cell per (colour, shape) pair never appears in training scenes; evaluation asks
about exactly those combinations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 96
CELL = IMAGE_SIZE // 3
BACKGROUND = (244, 243, 238)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (236, 200, 20),
    "purple": (140, 70, 175),
    "orange": (250, 130, 10),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
# Cells in reading order; the phrase is what captions and answers say.
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
NUMBERS = ("zero", "one", "two", "three")
RADIUS = {"small": 9, "large": 14}  # half the extent of a shape, in pixels


@dataclass(frozen=True, order=True)
class Item:
    """One shape in a scene."""

    cell: int  # 0..8, reading order
    colour: str
    shape: str
    size: str

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]

    def phrase(self, *, size: bool = True, position: bool = True) -> str:
        words = ["a"] + ([self.size] if size else []) + [self.colour, self.shape]
        text = " ".join(words)
        return f"{text} at the {self.position}" if position else text


Scene = tuple[Item, ...]  # sorted by cell


def held_out(colour: str, shape: str, cell: int) -> bool:
    """One cell per (colour, shape) pair, spread so that every cell loses two pairs."""
    c, s = list(COLOURS).index(colour), SHAPES.index(shape)
    return (c + 3 * s + 2 * cell) % 9 == 0


def random_scene(rng: random.Random, split: str = "train", max_items: int = 3) -> Scene:
    """A random scene; "train" scenes avoid held-out triples, "heldout" ones contain at least one."""
    while True:
        count = rng.randint(1, max_items)
        cells = sorted(rng.sample(range(9), count))
        items = tuple(Item(c, rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SIZES)) for c in cells)
        unseen = [held_out(i.colour, i.shape, i.cell) for i in items]
        if (split == "train" and not any(unseen)) or (split == "heldout" and any(unseen)):
            return items


def _mask(shape: str, size: str) -> np.ndarray:
    """A boolean cell-sized mask of one shape centred in the cell (hard edges, no anti-aliasing)."""
    r = RADIUS[size]
    yy, xx = np.mgrid[0:CELL, 0:CELL] + 0.5
    cy = cx = CELL / 2
    if shape == "circle":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if shape == "square":
        return (abs(yy - cy) <= r - 1) & (abs(xx - cx) <= r - 1)
    # an upright triangle: apex at the top, base at the bottom, as wide as it is tall
    top, bottom = cy - r, cy + r
    half = (yy - top) / (bottom - top) * r
    return (yy >= top) & (yy <= bottom) & (abs(xx - cx) <= half)


_MASKS = {(s, z): _mask(s, z) for s in SHAPES for z in SIZES}


def render(scene: Scene) -> np.ndarray:
    """The scene as an ``(H, W, 3)`` uint8 array."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for item in scene:
        row, col = divmod(item.cell, 3)
        view = image[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL]
        view[_MASKS[item.shape, item.size]] = COLOURS[item.colour]
    return image


def render_pil(scene: Scene):
    from PIL import Image

    return Image.fromarray(render(scene))


def caption(scene: Scene, rng: random.Random | None = None) -> str:
    """A description naming every shape in reading order; without ``rng`` it says everything.

    With ``rng``, sizes and positions are sometimes left out, so short prompts ("a red circle")
    are in the training distribution too.
    """
    say_size = rng is None or rng.random() < 0.5
    say_position = rng is None or rng.random() < 0.85
    parts = [item.phrase(size=say_size, position=say_position) for item in scene]
    return " and ".join(parts)


@dataclass(frozen=True)
class Question:
    kind: str  # colour, shape, count, position, what, exists
    text: str
    answer: str


def _unique(scene: Scene, **match: str) -> bool:
    return sum(all(getattr(i, k) == v for k, v in match.items()) for i in scene) == 1


def questions(scene: Scene, target: Item) -> list[Question]:
    """One question of each kind about ``target`` (an item of ``scene``) and the scene."""
    where = f" at the {target.position}"
    out = [
        Question("colour", f"what colour is the {target.shape}{'' if _unique(scene, shape=target.shape) else where}?",
                 target.colour),
        Question("shape", f"what shape is the {target.colour} one"
                          f"{'' if _unique(scene, colour=target.colour) else where}?", target.shape),
        Question("count", "how many shapes are there?", NUMBERS[len(scene)]),
    ]
    if _unique(scene, colour=target.colour, shape=target.shape):
        out.append(Question("position", f"where is the {target.colour} {target.shape}?", target.position))
    out.append(Question("what", f"what is at the {target.position}?",
                        f"{target.size} {target.colour} {target.shape}"))
    return out


# Training mix of question kinds. A question that names a shape ("what colour is the square?") makes
# the model find the shape in the image, one that names a colour ("what shape is the red one?") the
# colour: each way of looking an item up needs its own practice. Picking the target item uniformly
# left few questions that look up by shape or by place, and those were the ones the model got wrong.
QUESTION_MIX = {"colour": 4.0, "shape": 2.0, "position": 2.0, "what": 2.0, "exists": 1.0, "count": 0.5}


def random_question(scene: Scene, rng: random.Random) -> Question:
    """A training question: its kind drawn from ``QUESTION_MIX``, about an item the question can name alone."""
    kind = rng.choices(list(QUESTION_MIX), weights=list(QUESTION_MIX.values()))[0]
    if kind == "exists":
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        if rng.random() < 0.5:
            item = rng.choice(scene)
            colour, shape = item.colour, item.shape
        present = any(i.colour == colour and i.shape == shape for i in scene)
        return Question("exists", f"is there a {colour} {shape}?", "yes" if present else "no")
    if kind == "what" and rng.random() < 0.25:
        empty = [c for c in range(9) if all(i.cell != c for i in scene)]
        if empty:
            return Question("what", f"what is at the {POSITIONS[rng.choice(empty)]}?", "nothing")
    # mostly about an item the question names by its shape (colour) alone, not by its place
    key = {"colour": "shape", "shape": "colour"}.get(kind)
    named = [i for i in scene if key is None or _unique(scene, **{key: getattr(i, key)})]
    target = rng.choice(named if named and rng.random() < 0.65 else scene)
    if kind == "position" and not _unique(scene, colour=target.colour, shape=target.shape):
        kind = "colour"  # "where is the red circle?" needs a single red circle
    return next(q for q in questions(scene, target) if q.kind == kind)


def vocabulary_corpus() -> list[str]:
    """Every word the grammar uses, for training the tokenizer."""
    words = [*COLOURS, *SHAPES, *SIZES, *POSITIONS, *NUMBERS, "a", "at", "the", "and", "what", "colour", "is",
             "shape", "one", "how", "many", "shapes", "are", "there", "where", "nothing", "yes", "no"]
    scene = (Item(0, "red", "circle", "small"), Item(4, "blue", "square", "large"))
    lines = [" ".join(words), caption(scene), *(q.text + " " + q.answer for q in questions(scene, scene[0]))]
    return lines
