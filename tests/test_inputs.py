"""The bad-input corpus: every case gets a specific message and nothing reaches a model."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from umm.errors import InputError, UnknownModelError
from umm.inputs import check_prompt, open_image


def _png(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming huge dimensions: tiny on disk, enormous when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b""
    )


def _exif_rotated() -> bytes:
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    return _png(image, format="JPEG", exif=exif)


BAD_IMAGES = {
    "zero-byte file": (b"", "empty"),
    "truncated PNG": (_png(Image.new("RGB", (64, 64), "red"))[:60], "damaged or truncated"),
    "text renamed .png": (b"hello, I am not an image\n" * 10, "not an image"),
    "decompression bomb": (_bomb_png(30000, 30000), "limit is|decompression"),
    "20k x 20k image": (_bomb_png(20000, 20000), "too large"),
    "9k x 9k image": (_bomb_png(9000, 9000), "limit is 8192 px"),
    "1x1 image": (_png(Image.new("RGB", (1, 1))), "at least"),
    "extreme aspect ratio": (_png(Image.new("RGB", (4000, 10))), "aspect ratio"),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_images_are_refused_with_a_specific_message(name):
    data, message = BAD_IMAGES[name]
    with pytest.raises(InputError, match=message):
        open_image(data)


def test_oversized_upload_is_refused_before_decoding():
    with pytest.raises(InputError, match="limit is"):
        open_image(b"\0" * 101, max_bytes=100)


@pytest.mark.parametrize(
    ("image", "mode_in"),
    [
        (Image.new("CMYK", (32, 32), (0, 255, 0, 0)), "CMYK"),
        (Image.new("I;16", (32, 32), 40000), "I;16"),
        (Image.new("RGBA", (32, 32), (255, 0, 0, 0)), "RGBA"),
        (Image.new("P", (32, 32), 3), "P"),
        (Image.new("LA", (32, 32), (128, 255)), "LA"),
    ],
)
def test_unusual_modes_become_rgb(image, mode_in):
    fmt = "TIFF" if mode_in == "CMYK" else "PNG"
    out = open_image(_png(image, format=fmt))
    assert out.mode == "RGB" and out.size == (32, 32)


def test_transparent_pixels_are_flattened_on_white():
    out = open_image(_png(Image.new("RGBA", (16, 16), (255, 0, 0, 0))))
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    out = open_image(buffer.getvalue())
    assert out.mode == "RGB" and out.getpixel((0, 0))[0] > 200


def test_exif_rotation_is_applied():
    assert open_image(_exif_rotated()).size == (20, 60)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n\t  ", "empty"),
        ("x" * 100_000, "limit is"),
        (b"\xff\xfe broken", "not valid UTF-8"),
        ("bad \udc80 surrogate", "invalid characters"),
        (12345, "must be text"),
    ],
)
def test_bad_prompts_are_refused(text, message):
    with pytest.raises(InputError, match=message):
        check_prompt(text)


def test_control_characters_are_stripped_not_fatal():
    assert check_prompt("a\x00 cat\x1b[31m\n on a mat\x07") == "a cat[31m\n on a mat"


def test_unknown_model_id(real_catalog):
    with pytest.raises(UnknownModelError, match="Unknown model"):
        real_catalog.get("../../etc/passwd")
