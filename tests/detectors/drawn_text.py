"""Text drawn on photographs with fonts Debian ships (fonts-dejavu-core, fonts-liberation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONTS = Path("/usr/share/fonts/truetype")
#: Fonts the tests draw with; those not installed are skipped.
FONT_FILES = (
    "dejavu/DejaVuSans-Bold.ttf",
    "dejavu/DejaVuSerif.ttf",
    "liberation/LiberationSans-Regular.ttf",
)


def installed_fonts() -> list[Path]:
    return [FONTS / name for name in FONT_FILES if (FONTS / name).is_file()]


def draw_text(
    pixels: np.ndarray,
    text: str,
    *,
    font: Path,
    size: int,
    at: tuple[float, float] = (0.05, 0.1),
    fill: tuple[int, int, int] = (255, 255, 255),
    outline: tuple[int, int, int] | None = (0, 0, 0),
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``pixels`` with ``text`` drawn at ``at`` (fractions of the width and height, the text's
    top-left corner, moved in so that the text fits; the size shrinks until it fits in 90% of the
    width), and the text's box."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    while True:
        face = ImageFont.truetype(str(font), size)
        stroke = max(1, size // 14) if outline is not None else 0
        left, top, right, bottom = draw.textbbox((0, 0), text, font=face, stroke_width=stroke)
        if right - left <= 0.9 * image.width or size <= 8:
            break
        size -= 2
    x = min(int(at[0] * image.width), image.width - right - 2)
    y = min(int(at[1] * image.height), image.height - bottom - 2)
    draw.text(
        (max(0, x), max(0, y)),
        text,
        font=face,
        fill=fill,
        stroke_width=stroke,
        stroke_fill=outline,
    )
    x, y = max(0, x), max(0, y)
    return np.asarray(image), (x + left, y + top, x + right, y + bottom)
