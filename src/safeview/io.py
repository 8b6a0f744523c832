"""Safe image decoding and metadata-free encoding.

Every image that enters safeview goes through :func:`load_image`: a format allowlist, a pixel
budget checked *before* the pixels are decoded (decompression bombs), the EXIF orientation applied
first, and a conversion of every awkward mode (CMYK, 16-bit, grey, alpha, palette, animation) to
8-bit RGB.
Decoding never lets anything but :class:`ImageInputError` escape: a malformed file that makes the
decoder raise anything at all (``KeyError``, ``struct.error``, ``SyntaxError``, ...) is a one-line
per-file error, and a path that is not a regular file (a FIFO, ``/dev/zero``, a socket) is refused
before it is opened for reading; files are read with a size cap (:data:`DEFAULT_MAX_BYTES`).
Every image that leaves goes through :func:`encode_image`, which writes pixels only (no EXIF, GPS,
ICC or text chunks), and :func:`atomic_write`, which never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

_T = TypeVar("_T")

ImageSource = str | os.PathLike[str] | bytes | bytearray | Image.Image | np.ndarray

#: Formats we decode. Everything else (PSD, EPS, ICO, ...) is refused: each extra decoder is attack
#: surface, and moderation inputs come from the web.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
#: File extensions that a folder walk treats as images.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
#: Default pixel budget: 64 megapixels (about 8000 x 8000).
DEFAULT_MAX_PIXELS = 64_000_000
#: Largest encoded file read (bytes): 256 MiB, more than any image within the pixel budget needs.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

# A truncated file must fail, not decode into a half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageInputError(ValueError):
    """An input that is not a usable image. The message is one line and names the input.

    ``http_status`` is the status a web service answers with; the subclasses say what went wrong
    without anyone reading the message (which names the input, so may contain any text)."""

    http_status: int = 400


class ImageTooLargeError(ImageInputError):
    """The image is over the pixel budget (by its header, or a decompression bomb)."""

    http_status = 413


class UnsupportedFormatError(ImageInputError):
    """Not an image that the decoder recognises, or a format outside :data:`ALLOWED_FORMATS`."""

    http_status = 415


class CorruptImageError(ImageInputError):
    """A recognised image that cannot be decoded: empty, truncated, malformed, no pixels."""

    http_status = 400


@dataclass
class LoadedImage:
    """A decoded RGB image and what we learned while decoding it."""

    pixels: np.ndarray  # (H, W, 3) uint8, EXIF orientation applied
    name: str
    format: str
    sha256: str
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Decode ``source`` (a path, encoded bytes, a PIL image or an array) into 8-bit RGB.

    Parameters
    ----------
    source:
        A file path, the bytes of an encoded image, a ``PIL.Image.Image`` or a numpy array
        (H x W grey, H x W x 3 RGB or H x W x 4 RGBA; uint8, uint16, or float in [0, 1]).
    name:
        How the input is named in errors and reports; defaults to the path or ``"<bytes>"``.
    max_pixels:
        Largest width x height accepted. Checked from the header, before decoding.
    max_bytes:
        Largest encoded input accepted (a path is never read past this many bytes).

    Raises
    ------
    ImageInputError
        For a missing file, a path that is not a regular file, an empty or oversized file, a
        non-image, a truncated or malformed image, a format outside :data:`ALLOWED_FORMATS` or an
        image over the pixel budget. No other exception escapes from decoding.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        return _decode_bytes(read_input_file(path, label, max_bytes), label, max_pixels)
    if isinstance(source, (bytes, bytearray)):
        label = name or "<bytes>"
        if len(source) > max_bytes:
            raise ImageInputError(f"{label}: {len(source)} bytes exceeds the limit of {max_bytes}")
        return _decode_bytes(bytes(source), label, max_pixels)
    if isinstance(source, Image.Image):
        label = name or "<PIL image>"
        _check_budget(source.size, label, max_pixels)
        pixels, notes = _guarded(label, "cannot convert image", lambda: _to_rgb(source, label))
        return LoadedImage(pixels, label, source.format or "PIL", _sha256_pixels(pixels), notes)
    if isinstance(source, np.ndarray):
        label = name or "<array>"
        pixels = _array_to_rgb(source, label)
        _check_budget((pixels.shape[1], pixels.shape[0]), label, max_pixels)
        return LoadedImage(pixels, label, "ARRAY", _sha256_pixels(pixels))
    raise ImageInputError(
        f"{name or '<input>'}: unsupported input type {type(source).__name__} "
        "(expected a path, bytes, a PIL image or a numpy array)"
    )


def read_input_file(path: Path, label: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them.

    A FIFO, a device (``/dev/zero``), a socket or a directory is refused without reading from it:
    the file is opened non-blocking (a FIFO with no writer must not hang us) and checked with
    ``fstat`` on the open descriptor, so it cannot be swapped for something else in between.
    """
    try:
        before = path.stat()
    except FileNotFoundError:
        raise ImageInputError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageInputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(before.st_mode):
        raise ImageInputError(f"{label}: is a directory, not an image")
    if not stat.S_ISREG(before.st_mode):
        raise ImageInputError(f"{label}: not a regular file (a FIFO, device or socket)")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageInputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageInputError(f"{label}: not a regular file (a FIFO, device or socket)")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ImageInputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ImageInputError(f"{label}: larger than the limit of {max_bytes} bytes")
    return data


def _guarded(label: str, what: str, step: Callable[[], _T]) -> _T:
    """Run a decoding step; anything it raises (other than our own error) becomes one line."""
    try:
        return step()
    except ImageInputError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{label}: image exceeds the pixel budget") from None
    except Exception as exc:  # a malformed file may make a decoder raise anything at all
        raise CorruptImageError(
            f"{label}: {what} ({type(exc).__name__}: {_one_line(exc)})"[:500]
        ) from None


def _decode_bytes(data: bytes, label: str, max_pixels: int) -> LoadedImage:
    if not data:
        raise CorruptImageError(f"{label}: empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings(record=True) as caught:
        # Pillow warns on huge images (our own budget is checked below) and on oddities such as a
        # corrupt EXIF block: they become notes, never exceptions.
        warnings.simplefilter("always")
        image = _guarded(label, "cannot read image header", lambda: _open(data, label))
        if image.format not in ALLOWED_FORMATS:
            raise UnsupportedFormatError(
                f"{label}: unsupported format {image.format} "
                f"(allowed: {', '.join(sorted(ALLOWED_FORMATS))})"
            )
        _check_budget(image.size, label, max_pixels)
        _guarded(label, "truncated or corrupt image", image.load)
        fmt = "JPEG" if image.format == "MPO" else str(image.format)
        pixels, notes = _guarded(label, "truncated or corrupt image", lambda: _to_rgb(image, label))
    for warning in caught:
        note = f"decoder warning: {' '.join(str(warning.message).split())}"[:200]
        if not issubclass(warning.category, Image.DecompressionBombWarning) and note not in notes:
            notes.append(note)
    return LoadedImage(pixels, label, fmt, digest, notes)


def _open(data: bytes, label: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedFormatError(f"{label}: not a recognised image") from None


def _check_budget(size: tuple[int, int], label: str, max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"{label}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label}: {width}x{height} = {width * height} pixels exceeds the pixel budget "
            f"of {max_pixels}"
        )


def _to_rgb(image: Image.Image, label: str) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    frames = int(getattr(image, "n_frames", 1) or 1)  # may raise on a malformed file: see _guarded
    if frames > 1:
        image.seek(0)
        notes.append(f"animated image with {frames} frames: the first frame was used")
    try:
        oriented = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not stop moderation of the pixels
        oriented = image
        notes.append("EXIF orientation unreadable: ignored")
    if oriented is None:
        oriented = image
    mode = oriented.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(oriented).astype(np.float64)
        top = 65535.0 if mode != "F" and arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"{mode} image reduced to 8 bits")
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1)), notes
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in oriented.info)
    if has_alpha:
        rgba = oriented.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(background, rgba).convert("RGB")
        notes.append("transparency flattened onto white")
        return np.ascontiguousarray(np.asarray(flat, dtype=np.uint8)), notes
    if mode != "RGB":
        oriented = oriented.convert("RGB")
    pixels = np.asarray(oriented, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageInputError(f"{label}: could not convert mode {mode} to RGB")
    return np.ascontiguousarray(pixels), notes


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageInputError(
            f"{label}: array of shape {array.shape} is not an image (need HxW, HxWx3 or HxWx4)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageInputError(f"{label}: array has no pixels")
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float64)
        alpha = alpha / (255.0 if arr.dtype != np.float32 and arr.dtype != np.float64 else 1.0)
        top = 1.0 if arr.dtype.kind == "f" else 255.0
        arr = arr[..., :3] * alpha + top * (1.0 - alpha)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return np.ascontiguousarray((arr.astype(np.float64) / 257.0 + 0.5).astype(np.uint8))
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ImageInputError(f"{label}: float array contains NaN or infinity")
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return np.ascontiguousarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8))
    if arr.dtype.kind in "iu":
        return np.ascontiguousarray(np.clip(arr, 0, 255).astype(np.uint8))
    raise ImageInputError(f"{label}: unsupported array dtype {array.dtype}")


def _sha256_pixels(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


#: Output format (and extension) for each input format: keep the input's format where we can
#: write it faithfully, otherwise PNG (lossless).
_OUTPUT_FORMATS = {"JPEG": ("JPEG", ".jpg"), "PNG": ("PNG", ".png"), "WEBP": ("WEBP", ".webp")}


#: Every extension an obfuscated image may be written with.
OUTPUT_EXTENSIONS = frozenset({ext for _, ext in _OUTPUT_FORMATS.values()} | {".png"})


def output_format(input_format: str) -> tuple[str, str]:
    """The (PIL format, extension) an obfuscated copy of an ``input_format`` image is written in."""
    return _OUTPUT_FORMATS.get(input_format.upper(), ("PNG", ".png"))


def encode_image(
    pixels: np.ndarray, fmt: str = "PNG", *, quality: int = 92, optimize: bool = True
) -> bytes:
    """Encode RGB pixels with no metadata at all (no EXIF, GPS, ICC profile or text chunks).
    ``optimize=False`` skips the JPEG's second pass for smaller Huffman tables: the same pixels
    decode, three times faster (for an encoding that is only decoded again, never written)."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="RGB")
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=quality, optimize=optimize)
    elif fmt == "WEBP":
        image.save(buffer, format="WEBP", quality=quality)
    else:
        image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def decode_pixels(data: bytes) -> np.ndarray:
    """Decode bytes that we encoded ourselves back to RGB pixels (for re-scoring the output)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A crash or a kill leaves either the old file or the new one, never a partial file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".safeview-", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def resize(pixels: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize an (H, W[, C]) array to ``size`` = (width, height) with area/linear or nearest."""
    import cv2

    width, height = size
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    if nearest:
        interpolation = cv2.INTER_NEAREST
    elif width < pixels.shape[1] and height < pixels.shape[0]:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    return np.asarray(cv2.resize(pixels, (width, height), interpolation=interpolation))
