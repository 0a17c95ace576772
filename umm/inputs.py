"""Input checks that run before a request joins the queue.

Every rejection is an ``InputError`` with a sentence a user can act on; nothing malformed reaches a
model. Images are normalised to RGB, EXIF-rotated and bounded in size.
"""

from __future__ import annotations

import io
import unicodedata
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from umm.errors import InputError

MAX_PROMPT_CHARS = 4000
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 8
MAX_ASPECT = 16.0
MAX_FILE_BYTES = 20_000_000


def check_prompt(text: object, *, what: str = "prompt", allow_empty: bool = False) -> str:
    """Strip control characters, bound the length, refuse empty text."""
    if text is None:
        text = ""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"The {what} is not valid UTF-8 text.") from None
    if not isinstance(text, str):
        raise InputError(f"The {what} must be text.")
    if "\ufffd" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise InputError(f"The {what} contains invalid characters (broken UTF-8).")
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()
    if not text and not allow_empty:
        raise InputError(f"The {what} is empty. Please type something.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"The {what} is {len(text):,} characters long; the limit is {MAX_PROMPT_CHARS:,}.")
    return text


def open_image(source: str | Path | bytes | Image.Image, *, max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """Open and validate an uploaded image; returns an RGB image with EXIF rotation applied."""
    if isinstance(source, Image.Image):
        return check_image(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"Image file not found: {path.name}.")
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"The image file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
        data = path.read_bytes()
    else:
        data = bytes(source)
        if len(data) > max_bytes:
            raise InputError(f"The image is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    if not data:
        raise InputError("The image file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_dimensions(image.size)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"The image is too large to decode safely (over {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; "
            "decompression-bomb protection). Please downscale it."
        ) from None
    except UnidentifiedImageError:
        raise InputError("The file is not an image this app can read (use PNG, JPEG, WebP or GIF).") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"The image file is damaged or truncated ({err}).") from None
    return check_image(image)


def _check_dimensions(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS or max(width, height) > MAX_IMAGE_SIDE:
        raise InputError(
            f"The image is {width}×{height}; the limit is {MAX_IMAGE_SIDE} px per side and "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. Please downscale it."
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f"The image is {width}×{height}; it must be at least {MIN_IMAGE_SIDE} px per side.")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InputError(f"The image is {width}×{height}; the aspect ratio must be at most {MAX_ASPECT:g}:1.")


def check_image(image: Image.Image) -> Image.Image:
    """Bound the size, take the first frame, apply EXIF rotation, flatten alpha, convert to RGB."""
    _check_dimensions(image.size)
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")
