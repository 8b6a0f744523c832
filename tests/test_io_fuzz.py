"""Mutation fuzzing of :func:`safeview.io.load_image`: only ``ImageInputError`` may escape.

Valid images of every allowed format are made here, then mutated (byte flips, byte overwrites,
truncations, duplicated and dropped chunks, inserted junk) with a fixed seed and a bounded time.
A malformed multi-page TIFF or GIF used to escape as KeyError, struct.error, SyntaxError, ... and
abort a whole batch.
"""

from __future__ import annotations

import io
import os
import random
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeview.io import ImageInputError, LoadedImage, load_image

SEED = 20240611
BUDGET_S = float(os.environ.get("SAFEVIEW_FUZZ_SECONDS", "4"))


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    frames = [rgb, rgb.rotate(90), rgb.convert("L").convert("RGB")]
    out = []
    for fmt, kwargs in (
        ("PNG", {}),
        ("JPEG", {"quality": 80}),
        ("GIF", {"save_all": True, "append_images": frames[1:]}),
        ("TIFF", {"save_all": True, "append_images": frames[1:]}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("WEBP", {"quality": 70}),
        ("BMP", {}),
    ):
        buffer = io.BytesIO()
        frames[0].save(buffer, format=fmt, **kwargs)
        out.append(buffer.getvalue())
    return out


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        kind = rng.randrange(6)
        at = rng.randrange(len(buf))
        if kind == 0:  # flip one bit
            buf[at] ^= 1 << rng.randrange(8)
        elif kind == 1:  # overwrite a few bytes with interesting values
            for offset in range(rng.randint(1, 4)):
                if at + offset < len(buf):
                    buf[at + offset] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2:  # truncate
            del buf[at:]
        elif kind == 3:  # duplicate a chunk
            end = min(len(buf), at + rng.randint(1, 64))
            buf[end:end] = buf[at:end]
        elif kind == 4:  # drop a chunk
            del buf[at : at + rng.randint(1, 32)]
        else:  # insert junk
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(buf)


def test_mutated_images_only_ever_raise_image_input_error() -> None:
    rng = random.Random(SEED)
    seeds = _seeds()
    for data in seeds:  # the unmutated seeds decode
        assert isinstance(load_image(data), LoadedImage)
    deadline = time.monotonic() + BUDGET_S
    tried = refused = 0
    while time.monotonic() < deadline:
        sample = _mutate(rng.choice(seeds), rng)
        tried += 1
        try:
            loaded = load_image(sample, name="fuzz.bin")
        except ImageInputError as exc:
            refused += 1
            message = str(exc)
            assert message.startswith("fuzz.bin: ") and "\n" not in message, message
            continue
        # Anything that decodes is a proper RGB image.
        assert loaded.pixels.dtype == np.uint8 and loaded.pixels.ndim == 3
        assert loaded.pixels.shape[2] == 3
    assert tried >= 50 and refused > 0


def test_malformed_multipage_tiff_is_a_per_file_error(tmp_path: Path) -> None:
    # Deterministic mutations of a two-page TIFF: before the fix, reading their header or counting
    # their frames escaped as KeyError, TypeError, UserWarning, ... from inside Pillow.
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    good = buffer.getvalue()
    rng = random.Random(7)
    escaped = []
    for _ in range(300):
        sample = _mutate(good, rng)
        try:
            load_image(sample, name="x.tif")
        except ImageInputError:
            pass
        except Exception as exc:
            escaped.append(type(exc).__name__)
    assert escaped == []


def test_fifo_and_devices_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def attempt() -> None:
        try:
            load_image(fifo)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # unblock the reader so the test process can exit
        with open(fifo, "wb"):
            pass
        pytest.fail("load_image blocked on a FIFO")
    assert len(result) == 1 and isinstance(result[0], ImageInputError)
    assert "not a regular file" in str(result[0]) and "pipe.jpg" in str(result[0])
    if Path("/dev/zero").exists():
        assert not stat.S_ISREG(os.stat("/dev/zero").st_mode)
        with pytest.raises(ImageInputError, match="not a regular file"):
            load_image("/dev/zero")


def test_files_and_bytes_over_the_size_cap_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    size = path.stat().st_size
    assert load_image(path, max_bytes=size).width == 64
    with pytest.raises(ImageInputError, match=r"big\.png: larger than the limit"):
        load_image(path, max_bytes=size - 1)
    with pytest.raises(ImageInputError, match="exceeds the limit"):
        load_image(buffer.getvalue(), name="upload", max_bytes=10)


def test_decoder_warnings_become_notes_not_errors() -> None:
    # pytest turns warnings into errors here (filterwarnings = error), as a strict caller might: a
    # decoder warning ("Tag data larger than file") must be a note on a decodable image. The sample
    # is the 257th mutation of the fixed-seed run below (a multi-page TIFF).
    rng = random.Random(1)
    seeds = _seeds()
    sample = b""
    for _ in range(257):
        index = rng.randrange(len(seeds))
        sample = _mutate(seeds[index], rng)
    assert index == 3
    loaded = load_image(sample)
    assert loaded.pixels.ndim == 3
    assert any(note.startswith("decoder warning: ") for note in loaded.notes), loaded.notes
