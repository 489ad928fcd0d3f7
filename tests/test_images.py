"""Reading image files: one pixel limit, hostile files refused with a sentence."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hfr_hf.images import MAX_PIXELS, is_image, list_images, load_image


def png_header(path, width, height):
    """A PNG that claims width×height grey pixels (a decompression bomb: a few bytes that decode to gigabytes)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = zlib.compress(b"\0" * (width + 1) * 4)  # the first rows only: the header is what is judged
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [30000, 10000], ids=["30000x30000 (PIL's bomb error)", "10000x10000 (100 MP)"])
def test_images_above_the_pixel_limit_are_refused_before_decoding(tmp_path, side):
    bomb = png_header(tmp_path / "bomb.png", side, side)
    assert bomb.stat().st_size < 10_000 and side * side > MAX_PIXELS
    with pytest.raises(ValueError, match="megapixels are read"):
        load_image(bomb)


def test_an_image_at_the_limit_is_read(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((10, 4000), np.uint8)).save(path)
    assert load_image(path).size == (4000, 10)


def test_unreadable_files_are_value_errors(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "ok.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:40])
    for name in ("text.png", "cut.jpg"):
        with pytest.raises(ValueError, match="could not be read as an image"):
            load_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "missing.png")


def test_listing_finds_images_by_suffix_or_header(tmp_path):
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "subject01.glasses", format="GIF")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes((tmp_path / "a.png").read_bytes())
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "subject01.glasses"]
    assert is_image(tmp_path / "subject01.glasses") and not is_image(tmp_path / "notes.txt")
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "a.png")
