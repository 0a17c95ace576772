"""The acceptance table of the shapes model, measured through the Janus adapter on held-out scenes.

    python -m umm.shapes.evaluate [--model DIR]

Understanding: questions about held-out (colour, shape, cell) combinations, answered greedily.
Generation: held-out captions, sampled with CFG on and off and read back by the pixel detector.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections import defaultdict
from pathlib import Path

from umm.shapes import world
from umm.shapes.detect import detect

TARGETS = {
    ("understanding", "colour"): 0.95, ("understanding", "shape"): 0.90, ("understanding", "count"): 0.90,
    ("understanding", "position"): 0.80, ("generation", "colour"): 0.90, ("generation", "shape"): 0.75,
    ("generation", "count"): 0.75, ("generation", "position"): 0.70,
}
EVAL_SEED = 12345  # scenes come from their own stream, disjoint from training by the held-out rule


def load_adapter(directory: Path | str | None = None):
    """The catalog's ``shapes-janus`` entry (optionally at another folder), loaded on the CPU."""
    import torch

    from umm.catalog import load_catalog
    from umm.registry import adapter_class

    spec = load_catalog().get("shapes-janus")
    if directory is not None:
        spec = spec.replace(repo=str(Path(directory).resolve()))
    adapter = adapter_class(spec.family)(spec)
    adapter.load(torch.device("cpu"), torch.float32)
    return adapter


def heldout_scenes(count: int, seed: int = EVAL_SEED) -> list[world.Scene]:
    rng = random.Random(seed)
    return [world.random_scene(rng, "heldout") for _ in range(count)]


def _target(scene: world.Scene) -> world.Item:
    return next(i for i in scene if world.held_out(i.colour, i.shape, i.cell))


def understanding(adapter, scenes: list[world.Scene]) -> dict[str, float]:
    from umm.control import RunControl
    from umm.types import Message, UnderstandRequest

    hits: dict[str, list[bool]] = defaultdict(list)
    for scene in scenes:
        image = world.render_pil(scene)
        for q in world.questions(scene, _target(scene)):
            request = UnderstandRequest([Message("user", q.text, [image])], params={"temperature": 0.0}, seed=0)
            reply = "".join(adapter.understand(request, RunControl())).strip().rstrip(".")
            hits[q.kind].append(reply == q.answer)
    return {kind: sum(v) / len(v) for kind, v in hits.items()}


def judge(scene: world.Scene, image) -> dict[str, float]:
    """Per image: requested colours present, shapes, positions (fractions of items) and exact count."""
    blobs = detect(image)
    n = len(scene)
    return {
        "colour": sum(any(b.colour == i.colour for b in blobs) for i in scene) / n,
        "shape": sum(any((b.colour, b.shape) == (i.colour, i.shape) for b in blobs) for i in scene) / n,
        "count": float(len(blobs) == n),
        "position": sum(any((b.colour, b.shape, b.cell) == (i.colour, i.shape, i.cell) for b in blobs)
                        for i in scene) / n,
    }


def generation(adapter, scenes: list[world.Scene], *, guidance_scale: float, per_caption: int = 2,
               temperature: float = 1.0, seed: int = 0) -> dict[str, float]:
    from umm.control import RunControl

    totals: dict[str, float] = defaultdict(float)
    count = 0
    for k, scene in enumerate(scenes):
        tokens = adapter.sample_image_tokens(
            world.caption(scene), num_images=per_caption, guidance_scale=guidance_scale, temperature=temperature,
            generator=adapter.generator(seed + k), control=RunControl(),
        )
        for image in adapter.decode(tokens):
            for key, value in judge(scene, image).items():
                totals[key] += value
            count += 1
    return {key: value / count for key, value in totals.items()}


def table(und: dict[str, float], gen_on: dict[str, float], gen_off: dict[str, float], cfg: float,
          temperature: float = 1.0) -> str:
    kinds = ("colour", "shape", "count", "position")
    lines = ["| held-out | " + " | ".join(kinds) + " |", "|---|" + "--:|" * len(kinds)]

    def row(name: str, values: dict[str, float], task: str) -> str:
        cells = []
        for k in kinds:
            target = TARGETS[task, k]
            mark = "" if values[k] >= target else " ✗"
            cells.append(f"{100 * values[k]:.1f}%{mark}")
        return f"| {name} | " + " | ".join(cells) + " |"

    lines.append(row("understanding", und, "understanding"))
    lines.append(row(f"generation, CFG {cfg:g}, T {temperature:g}", gen_on, "generation"))
    lines.append(row(f"generation, CFG 1 (off), T {temperature:g}", gen_off, "generation"))
    goal = " / ".join(f"{k} ≥{100 * TARGETS['understanding', k]:.0f}%" for k in kinds)
    goal_g = " / ".join(f"{k} ≥{100 * TARGETS['generation', k]:.0f}%" for k in kinds)
    extra = ", ".join(f"{k} {100 * v:.1f}%" for k, v in und.items() if k not in kinds)
    return "\n".join([*lines, "", f"targets: understanding {goal}; generation {goal_g}; CFG on beats off.",
                      f"other understanding questions: {extra}"])


def evaluate_dir(directory: Path | str | None = None, *, scenes: int = 60, cfg: float | None = None,
                 temperature: float | None = None) -> str:
    """The table, with the catalog's generation defaults (CFG scale, temperature) unless given."""
    adapter = load_adapter(directory)
    defaults = adapter.spec.capability("generate").defaults()
    cfg = defaults["guidance_scale"] if cfg is None else cfg
    temperature = defaults["temperature"] if temperature is None else temperature
    held = heldout_scenes(scenes)
    und = understanding(adapter, held)
    on = generation(adapter, held, guidance_scale=cfg, temperature=temperature)
    off = generation(adapter, held, guidance_scale=1.0, temperature=temperature)
    text = table(und, on, off, cfg, temperature)
    print(text, flush=True)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umm.shapes.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the catalog's)")
    parser.add_argument("--scenes", type=int, default=60, help="held-out scenes (each asked 4-5 questions)")
    parser.add_argument("--cfg", type=float, default=None, help="CFG scale of the 'on' row (default: catalog's)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="image-token sampling temperature (default: catalog's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    evaluate_dir(args.model, scenes=args.scenes, cfg=args.cfg, temperature=args.temperature)


if __name__ == "__main__":
    main()
