from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeview.io import (
    ImageInputError,
    atomic_write,
    decode_pixels,
    encode_image,
    load_image,
    output_format,
)


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_every_source_kind_decodes_to_the_same_rgb(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for source in (path, str(path), data, Image.fromarray(pixels), pixels):
        loaded = load_image(source)
        assert loaded.pixels.shape == (20, 30, 3)
        assert loaded.pixels.dtype == np.uint8
        np.testing.assert_array_equal(loaded.pixels, pixels)


def test_exif_orientation_is_applied_before_anything_else() -> None:
    pixels = np.zeros((10, 40, 3), dtype=np.uint8)
    pixels[:, :5] = 255  # a white band on the left
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = load_image(_encode(image, "JPEG", exif=exif, quality=100))
    assert loaded.pixels.shape[:2] == (40, 10)
    assert loaded.pixels[:5].mean() > 200  # the band is now at the top


@pytest.mark.parametrize(
    ("mode", "note"),
    [
        ("CMYK", None),
        ("L", None),
        ("LA", "transparency"),
        ("RGBA", "transparency"),
        ("I;16", "8 bits"),
        ("P", None),
    ],
)
def test_awkward_modes_become_rgb(mode: str, note: str | None) -> None:
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 256)
        fmt = "PNG"
    else:
        image = rgb.convert(mode)
        fmt = "JPEG" if mode == "CMYK" else "PNG"
    loaded = load_image(_encode(image, fmt))
    assert loaded.pixels.shape == (16, 16, 3)
    assert loaded.pixels.dtype == np.uint8
    if note:
        assert any(note in n for n in loaded.notes)
    if mode == "I;16":
        assert loaded.pixels.max() > 200  # scaled down, not clipped to 255 everywhere


def test_animated_gif_uses_first_frame_and_says_so() -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 255, 0))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(data)
    assert loaded.pixels[0, 0, 0] > 200 and loaded.pixels[0, 0, 1] < 50
    assert any("first frame" in note for note in loaded.notes)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty file"), (b"hello, not an image", "not a recognised image")],
)
def test_bad_bytes_get_one_line_errors(data: bytes, message: str) -> None:
    with pytest.raises(ImageInputError, match=message) as info:
        load_image(data, name="upload.jpg")
    assert "upload.jpg" in str(info.value) and "\n" not in str(info.value)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    data = _encode(Image.fromarray(np.full((64, 64, 3), 7, np.uint8)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match="truncated"):
        load_image(path)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageInputError, match="directory"):
        load_image(tmp_path)


def test_unsupported_format_is_refused() -> None:
    data = _encode(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(ImageInputError, match="unsupported format ICO"):
        load_image(data)


def test_pixel_budget_is_checked_before_decoding() -> None:
    # 20000 x 20000 grey compresses to a tiny PNG: a decompression bomb.
    bomb = _encode(Image.new("L", (20000, 20000)), "PNG")
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageInputError, match="pixel budget"):
        load_image(bomb, max_pixels=10_000_000)


def test_encoded_output_has_no_metadata() -> None:
    image = Image.fromarray(np.full((32, 32, 3), 100, np.uint8))
    exif = image.getexif()
    exif[0x010F] = "CameraMaker"
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}  # GPS IFD
    original = _encode(image, "JPEG", exif=exif)
    assert b"CameraMaker" in original
    loaded = load_image(original)
    for fmt in ("JPEG", "PNG", "WEBP"):
        out = encode_image(loaded.pixels, fmt)
        assert b"CameraMaker" not in out
        with Image.open(io.BytesIO(out)) as reread:
            assert not reread.getexif()
            assert "icc_profile" not in reread.info
        assert decode_pixels(out).shape == (32, 32, 3)


def test_output_format_keeps_writable_formats() -> None:
    assert output_format("JPEG") == ("JPEG", ".jpg")
    assert output_format("GIF") == ("PNG", ".png")


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.bin"
    old_umask = os.umask(0o022)
    try:
        atomic_write(target, b"abc")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"abc"
    assert target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_bytes() == b"abc"  # the old file survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["x.bin"]  # no temp file left


def test_image_errors_are_typed_with_their_http_status(tmp_path: Path) -> None:
    from safeview.io import CorruptImageError, ImageTooLargeError, UnsupportedFormatError

    truncated = _encode(Image.fromarray(np.full((64, 64, 3), 7, np.uint8)), "JPEG")
    bomb = _encode(Image.new("L", (5000, 5000)), "PNG")
    cases = [
        (b"hello, not an image", UnsupportedFormatError, 415),
        (_encode(Image.new("RGB", (16, 16)), "ICO"), UnsupportedFormatError, 415),
        (bomb, ImageTooLargeError, 413),
        (b"", CorruptImageError, 400),
        (truncated[: len(truncated) // 2], CorruptImageError, 400),
    ]
    for data, kind, status in cases:
        # A name that reads like another error must not change the type: it is in the message.
        with pytest.raises(kind) as info:
            load_image(data, name="unsupported format, pixel budget", max_pixels=1_000_000)
        assert type(info.value) is kind and info.value.http_status == status
    with pytest.raises(ImageInputError) as other:
        load_image(tmp_path / "missing.png")
    assert type(other.value) is ImageInputError and other.value.http_status == 400
    for kind in (CorruptImageError, ImageTooLargeError, UnsupportedFormatError):
        assert issubclass(kind, ImageInputError) and issubclass(kind, ValueError)


def test_an_unoptimised_jpeg_decodes_to_the_same_pixels() -> None:
    rng = np.random.default_rng(3)
    pixels = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    optimised = encode_image(pixels, "JPEG")
    quick = encode_image(pixels, "JPEG", optimize=False)
    assert optimised != quick  # other Huffman tables
    assert np.array_equal(decode_pixels(optimised), decode_pixels(quick))
