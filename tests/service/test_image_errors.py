"""The service answers an image error by its type (http_status), not by its message text."""

from __future__ import annotations

import pytest

from safeview.io import (
    CorruptImageError,
    ImageInputError,
    ImageTooLargeError,
    UnsupportedFormatError,
)
from safeview.service.errors import image_error as _image_error

MISLEADING = "upload: unsupported format, not a recognised image, over the pixel budget"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ImageTooLargeError(MISLEADING), 413, "image_too_large"),
        (UnsupportedFormatError(MISLEADING), 415, "unsupported_media_type"),
        (CorruptImageError(MISLEADING), 400, "invalid_image"),
        (ImageInputError(MISLEADING), 400, "invalid_image"),
    ],
)
def test_image_errors_map_by_type(error: ImageInputError, status: int, code: str) -> None:
    mapped = _image_error(error)
    assert (mapped.status, mapped.code) == (status, code)
    assert mapped.message == MISLEADING
