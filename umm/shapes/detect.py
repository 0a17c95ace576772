"""A pixel-level reader of shapes-world images, to judge generated images without a model.

Pixels are labelled with the nearest palette colour (or background, or nothing when far from all),
each colour is split into 4-connected blobs, and a blob's shape comes from how much of its bounding
box it fills (square ~1, circle ~pi/4, triangle ~1/2) and which box corners it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from umm.shapes.world import BACKGROUND, CELL, COLOURS, POSITIONS, RADIUS

MIN_AREA = 20  # pixels; smaller blobs are decoding noise
MAX_DISTANCE = 90.0  # RGB distance beyond which a pixel belongs to no palette colour
LARGE_EXTENT = RADIUS["small"] + RADIUS["large"]  # pixels: half-way between the two sizes' extents


@dataclass(frozen=True)
class Blob:
    colour: str
    shape: str
    cell: int
    size: str
    area: int
    fill: float

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]


def colour_labels(image: np.ndarray) -> np.ndarray:
    """Per pixel: the index into ``COLOURS`` (0..5), -1 for background, -2 for no palette colour."""
    palette = np.array([BACKGROUND, *COLOURS.values()], dtype=np.float32)
    pixels = image[..., :3].astype(np.float32)
    distance = np.linalg.norm(pixels[:, :, None, :] - palette[None, None], axis=-1)
    nearest = distance.argmin(-1) - 1
    nearest[distance.min(-1) > MAX_DISTANCE] = -2
    return nearest


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, as arrays of (y, x) coordinates."""
    seen = np.zeros_like(mask, dtype=bool)
    height, width = mask.shape
    out = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        stack, points = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            points.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        out.append(np.array(points))
    return out


def classify(points: np.ndarray) -> tuple[str, float]:
    """circle / square / triangle from the fill ratio of the bounding box and its covered corners."""
    (y0, x0), (y1, x1) = points.min(0), points.max(0)
    h, w = y1 - y0 + 1, x1 - x0 + 1
    fill = len(points) / float(h * w)
    box = np.zeros((h, w), dtype=bool)
    box[points[:, 0] - y0, points[:, 1] - x0] = True
    k = max(1, min(h, w) // 6)  # corner patch size
    corner = [box[:k, :k].mean(), box[:k, -k:].mean(), box[-k:, :k].mean(), box[-k:, -k:].mean()]
    if fill > 0.88 and min(corner) > 0.5:
        return "square", fill
    if fill < 0.66 and max(corner[:2]) < 0.5 and min(corner[2:]) > 0.3:
        return "triangle", fill
    if fill < 0.6:
        return "triangle", fill
    return ("square" if fill > 0.92 else "circle"), fill


def detect(image) -> list[Blob]:
    """Every shape-sized blob in an image (PIL image or uint8 array), largest first."""
    array = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
    labels = colour_labels(array)
    blobs = []
    for index, colour in enumerate(COLOURS):
        for points in _components(labels == index):
            if len(points) < MIN_AREA:
                continue
            shape, fill = classify(points)
            cy, cx = points.mean(0)
            cell = min(int(cy // CELL), 2) * 3 + min(int(cx // CELL), 2)
            extent = int((points.max(0) - points.min(0)).max()) + 1
            blobs.append(Blob(colour, shape, cell, "large" if extent >= LARGE_EXTENT else "small", len(points), fill))
    return sorted(blobs, key=lambda b: -b.area)
