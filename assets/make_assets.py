"""Regenerate the example images (original, drawn with PIL; see LICENSE.md): ``python assets/make_assets.py``."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 256


def landscape() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(SIZE // 2 + 20):  # sky gradient
        draw.line([(0, y), (SIZE, y)], fill=(70 + y // 2, 130 + y // 3, 230))
    draw.ellipse([170, 30, 220, 80], fill=(255, 214, 90))  # sun
    draw.polygon([(0, 200), (70, 110), (150, 200)], fill=(90, 110, 140))  # mountains
    draw.polygon([(90, 200), (180, 95), (256, 200)], fill=(110, 130, 160))
    draw.polygon([(160, 120), (180, 95), (200, 120)], fill=(245, 245, 250))
    draw.rectangle([0, 190, SIZE, SIZE], fill=(80, 160, 80))  # meadow
    draw.rectangle([40, 205, 48, 235], fill=(110, 70, 40))  # tree
    draw.ellipse([24, 170, 64, 212], fill=(40, 120, 50))
    return image


def shapes() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (245, 240, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle([30, 40, 110, 120], fill=(220, 60, 60))
    draw.ellipse([140, 40, 220, 120], fill=(60, 110, 220))
    draw.polygon([(70, 150), (30, 225), (110, 225)], fill=(60, 170, 90))
    draw.rectangle([140, 150, 220, 225], outline=(240, 180, 30), width=8)
    return image


def cat() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (200, 225, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 190, SIZE, SIZE], fill=(170, 60, 60))  # red chair seat
    draw.ellipse([70, 110, 190, 210], fill=(120, 120, 120))  # body
    draw.ellipse([90, 60, 170, 135], fill=(130, 130, 130))  # head
    draw.polygon([(95, 80), (100, 40), (125, 68)], fill=(130, 130, 130))  # ears
    draw.polygon([(165, 80), (160, 40), (135, 68)], fill=(130, 130, 130))
    draw.ellipse([108, 88, 120, 100], fill=(250, 220, 80))  # eyes
    draw.ellipse([140, 88, 152, 100], fill=(250, 220, 80))
    draw.polygon([(126, 108), (134, 108), (130, 114)], fill=(230, 150, 160))  # nose
    return image


def shapes_world() -> Image.Image:
    """A scene of the shapes-janus toy world (umm/shapes/world.py), the offline model's home ground."""
    from umm.shapes import world

    return world.render_pil((world.Item(0, "red", "circle", "small"), world.Item(4, "green", "square", "large"),
                             world.Item(8, "blue", "triangle", "large")))


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE.parent))
    for name, make in {"landscape": landscape, "shapes": shapes, "cat": cat, "shapes-world": shapes_world}.items():
        make().save(HERE / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main()
