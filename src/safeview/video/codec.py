"""Safe video decoding and metadata-free encoding, with PyAV (which bundles FFmpeg).

Every clip that enters safeview goes through :func:`probe_video` (a regular file, or the clip's
bytes held in memory, within the size cap, a container and codec from an allowlist, resolution,
duration and frame count within the caps, all from the header, before any frame is decoded) and
:func:`read_frames` (the caps checked again while decoding, a stream that ends early or breaks off
named as truncated or corrupt, rotation metadata applied to the pixels). Nothing but
:class:`VideoInputError` escapes from decoding; its message is one line that names the input. A
clip given as bytes or a binary file object (:data:`VideoInput`) is demuxed from memory: nothing
of it is written to disk (the service relies on this).

Every clip that leaves goes through :class:`VideoWriter`: frames are encoded (H.264) into a
temporary file in the destination folder, which is renamed over the destination only when
everything is written (:meth:`VideoWriter.commit`); on any error the temporary file is removed, so
nothing half-written is ever left. Given a writable object (an :class:`io.BytesIO`) instead of a
path, it encodes an MP4 in memory and hands it over on commit. The output carries no metadata of
the source (title, location, creation time, rotation: the pixels are turned upright instead);
audio is dropped unless asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Protocol

import cv2
import numpy as np

from safeview.io import ImageInputError
from safeview.video.options import VideoOptions


class VideoInputError(ImageInputError):
    """An input that is not a usable video; the message is one line and names the input."""


class VideoTooLargeError(VideoInputError):
    """Over a cap: file size, frame size, duration or number of frames."""

    http_status = 413


class UnsupportedVideoError(VideoInputError):
    """Not a video container we read, no video stream, or a codec outside the allowlist."""

    http_status = 415


class CorruptVideoError(VideoInputError):
    """A recognised video that cannot be decoded: empty, truncated, malformed."""

    http_status = 422


class VideoOutputError(RuntimeError):
    """The output could not be written (a codec that cannot be copied, a full disk)."""


#: Containers we demux (FFmpeg's demuxer names): each extra demuxer is attack surface.
ALLOWED_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})
#: Video codecs we decode.
ALLOWED_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "mpeg2video", "ffv1", "prores"}
)


#: A clip to read: a path, the clip's bytes, or a binary file object (read whole, up to the size
#: cap; nothing of it is written anywhere).
VideoInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


class BinarySink(Protocol):
    """Where :class:`VideoWriter` hands an output encoded in memory (an :class:`io.BytesIO`)."""

    def write(self, data: bytes, /) -> object: ...


#: Where a clip is written: a path (atomically, through a temporary file beside it) or a
#: :class:`BinarySink` (encoded in memory, as MP4).
VideoTarget = str | os.PathLike[str] | BinarySink


@dataclass
class VideoSource:
    """What the header of a clip says, checked against the caps.

    ``path`` is the file; for a clip read from memory it is None and ``data`` holds its bytes.
    """

    name: str
    path: Path | None
    container: str
    codec: str
    width: int  # as displayed (rotation applied)
    height: int
    rate: Fraction  # average frame rate
    time_base: Fraction
    frames: int  # from the header; 0 when the container does not say
    duration: float  # seconds, from the header; 0.0 when unknown
    rotation: int  # degrees counter-clockwise the stored frames are turned for display
    size_bytes: int
    audio_codec: str | None = None
    notes: list[str] = field(default_factory=list)
    data: bytes | None = field(default=None, repr=False)

    @property
    def fps(self) -> float:
        return float(self.rate)

    @property
    def origin(self) -> Path | bytes:
        """What to demux: the clip's bytes when it was read from memory, else its file."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise VideoInputError(f"{self.name}: neither a file nor bytes to read")
        return self.path


class Frame:
    """One decoded frame: its position, its timestamp, and its pixels on demand (upright RGB)."""

    def __init__(self, index: int, pts: int, time: float, frame: Any, info: VideoSource) -> None:
        self.index = index
        self.pts = pts
        self.time = time  # seconds from the start of the stream
        self._frame = frame
        self._info = info
        self._pixels: np.ndarray | None = None

    @property
    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, upright, at the stream's size (converted once)."""
        if self._pixels is None:
            self._pixels = _pixels(self._frame, self._info)
        return self._pixels

    def planar_yuv420(self) -> np.ndarray | None:
        """The decoded 4:2:0 planes as one (H * 3 / 2, W) array when the frame is stored that
        way, upright and at the stream's size (it can then be re-encoded without a round trip
        through RGB); else None."""
        frame, info = self._frame, self._info
        if (
            frame.format.name != "yuv420p"
            or info.rotation
            or (frame.width, frame.height) != (info.width, info.height)
        ):
            return None
        return np.asarray(frame.to_ndarray())

    def histogram(self, bins: int = 16) -> np.ndarray:
        """A colour histogram of a subsample of the frame (``bins`` per channel, each channel
        summing to 1): from the Y, U and V planes when the frame is 4:2:0, else from RGB."""
        planes = self.planar_yuv420()
        if planes is None:
            small = self.pixels[::4, ::4]
            channels = [small[..., c].ravel() for c in range(3)]
        else:
            height = self._info.height
            chroma = planes[height:].ravel()
            half = len(chroma) // 2
            channels = [planes[:height:4, ::4].ravel(), chroma[:half:4], chroma[half::4]]
        shift = 256 // bins
        return np.concatenate(
            [np.bincount(c // shift, minlength=bins) / max(1, c.size) for c in channels]
        )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", text)


def _check_file(path: Path, label: str, max_bytes: int) -> int:
    """The size of the regular file ``path``; refuses what is not one, empty, or over the cap."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VideoInputError(f"{label}: no such file") from None
    except OSError as exc:
        raise VideoInputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoInputError(f"{label}: is a directory, not a video")
    if not stat.S_ISREG(info.st_mode):
        raise VideoInputError(f"{label}: not a regular file (a FIFO, device or socket)")
    if info.st_size == 0:
        raise CorruptVideoError(f"{label}: empty file (0 bytes)")
    if info.st_size > max_bytes:
        raise VideoTooLargeError(
            f"{label}: {info.st_size} bytes exceeds the video size cap of {max_bytes}"
        )
    return int(info.st_size)


def _check_bytes(data: bytes, label: str, max_bytes: int) -> int:
    """The size of a clip held in memory; refuses an empty one or one over the cap."""
    if not data:
        raise CorruptVideoError(f"{label}: empty (0 bytes)")
    if len(data) > max_bytes:
        raise VideoTooLargeError(
            f"{label}: {len(data)} bytes exceeds the video size cap of {max_bytes}"
        )
    return len(data)


def _in_memory(source: VideoInput, max_bytes: int) -> bytes | None:
    """The clip's bytes when ``source`` is not a path (a file object is read up to one byte
    past the cap, so that an oversized one is refused without reading it all); else None."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        return None
    data = source.read(max_bytes + 1)
    if not isinstance(data, bytes):
        raise VideoInputError("a video file object must be opened in binary mode")
    return data


@contextlib.contextmanager
def _open(source: Path | bytes, label: str) -> Iterator[Any]:
    """The container of a file, or of a clip's bytes (demuxed from memory: no file is made)."""
    import av

    try:
        container = av.open(
            io.BytesIO(source) if isinstance(source, bytes) else str(source),
            metadata_errors="ignore",
        )
    except av.error.InvalidDataError:
        raise UnsupportedVideoError(
            f"{label}: not a recognised video, or truncated before its header ends"
        ) from None
    except Exception as exc:  # a malformed file may make the demuxer raise anything
        raise CorruptVideoError(f"{label}: cannot open video ({_one_line(exc)})"[:500]) from None
    try:
        yield container
    finally:
        container.close()


def probe_video(
    source: VideoInput, options: VideoOptions | None = None, *, name: str | None = None
) -> VideoSource:
    """Read and check the header of the clip at the path ``source``, or of the clip ``source``
    held in memory (bytes or a binary file object: demuxed from memory, never written to disk);
    decodes no frame but the first (for its rotation).

    Raises
    ------
    VideoInputError
        Missing, not a regular file, empty, over a cap, not a video container we read, no video
        stream, a codec outside :data:`ALLOWED_CODECS`, or a header that does not parse.
    """
    options = options or VideoOptions()
    data = _in_memory(source, options.max_bytes)
    path: Path | None = None
    origin: Path | bytes
    if data is None:
        origin = path = Path(source)  # type: ignore[arg-type]  # a str or PathLike here
        label = name or str(path)
        size = _check_file(path, label, options.max_bytes)
    else:
        origin = data
        label = name or "in-memory video"
        size = _check_bytes(data, label, options.max_bytes)
    with _open(origin, label) as container:
        if container.format.name not in ALLOWED_CONTAINERS:
            raise UnsupportedVideoError(
                f"{label}: unsupported container {container.format.name} "
                "(allowed: MP4/MOV, Matroska/WebM, AVI)"
            )
        if not container.streams.video:
            raise UnsupportedVideoError(f"{label}: no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in ALLOWED_CODECS:
            raise UnsupportedVideoError(
                f"{label}: unsupported video codec {codec} "
                f"(allowed: {', '.join(sorted(ALLOWED_CODECS))})"
            )
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if width <= 0 or height <= 0:
            raise CorruptVideoError(f"{label}: video has no pixels ({width}x{height})")
        if width * height > options.max_frame_pixels:
            raise VideoTooLargeError(
                f"{label}: {width}x{height} frames exceed the cap of {options.max_frame_pixels} "
                "pixels per frame"
            )
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        notes: list[str] = []
        if not rate or rate <= 0:
            rate = Fraction(25)
            notes.append("frame rate unknown: 25 fps assumed for the output's nominal rate")
        duration = _stream_duration(container, stream)
        if duration > options.max_duration:
            raise VideoTooLargeError(
                f"{label}: {duration:.1f} s exceeds the duration cap of {options.max_duration:g} s"
            )
        frames = int(stream.frames or 0)
        if frames > options.max_frames:
            raise VideoTooLargeError(
                f"{label}: {frames} frames exceed the cap of {options.max_frames} frames"
            )
        rotation = _header_rotation(container, stream)
        if rotation % 180:
            width, height = height, width
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return VideoSource(
            name=label,
            path=path,
            container=str(container.format.name),
            codec=str(codec),
            width=width,
            height=height,
            rate=Fraction(rate),
            time_base=Fraction(stream.time_base or Fraction(1, 90000)),
            frames=frames,
            duration=duration,
            rotation=rotation,
            size_bytes=size,
            audio_codec=audio,
            notes=notes,
            data=data,
        )


def _stream_duration(container: Any, stream: Any) -> float:
    """The video stream's duration in seconds from the header (0.0 when it does not say): the
    stream's own, Matroska's per-stream ``DURATION`` tag, or the container's when the video is
    its only stream (a container's duration covers its audio too)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        with contextlib.suppress(ValueError):
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if container.duration is not None and len(container.streams) == 1:
        return float(container.duration) / 1_000_000
    return 0.0


def _header_rotation(container: Any, stream: Any) -> int:
    """The display rotation of the first frame (multiples of 90), or 0."""
    try:
        for frame in container.decode(stream):
            return _rotation(frame)
    except Exception:  # the frames are decoded, and checked, later
        return 0
    return 0


def _rotation(frame: Any) -> int:
    value = float(getattr(frame, "rotation", 0) or 0)
    return (round(value / 90) * 90) % 360


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """Turn stored pixels by ``rotation`` degrees counter-clockwise, as players display them."""
    if rotation == 0:
        return pixels
    return np.ascontiguousarray(np.rot90(pixels, k=rotation // 90))


def sha256_source(info: VideoSource) -> str:
    """The SHA-256 of the clip ``info`` describes: of its bytes in memory, or of its file."""
    origin = info.origin
    if isinstance(origin, bytes):
        return hashlib.sha256(origin).hexdigest()
    return sha256_file(origin)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_frames(
    info: VideoSource,
    options: VideoOptions | None = None,
    *,
    on_audio: Callable[[Any], None] | None = None,
) -> Iterator[Frame]:
    """Decode every frame of the clip ``info`` describes, upright, as RGB, in order.

    With ``on_audio``, the first audio stream's packets are handed to it as they are demuxed
    (to be copied into the output, interleaved). Raises :class:`VideoInputError` when a cap is
    crossed while decoding, when the stream breaks off (decoder error) or ends well before its
    header said it would (truncated file).
    """
    import av

    options = options or VideoOptions()
    label = info.name
    index = -1
    last_time = 0.0
    last_pts: int | None = None
    with _open(info.origin, label) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        audio = (
            container.streams.audio[0] if on_audio is not None and container.streams.audio else None
        )
        streams = [stream, audio] if audio is not None else [stream]
        time_base = stream.time_base or Fraction(1, 90000)
        step = 1 / float(info.rate)
        try:
            for packet in container.demux(*streams):
                if audio is not None and packet.stream.index == audio.index:
                    if packet.dts is not None and on_audio is not None:
                        on_audio(packet)
                    continue
                for decoded in packet.decode():
                    index += 1
                    if index >= options.max_frames:
                        raise VideoTooLargeError(
                            f"{label}: more than the cap of {options.max_frames} frames"
                        )
                    pts = decoded.pts
                    if pts is None:  # no timestamp: one frame period after the last one
                        pts = 0 if last_pts is None else last_pts + max(1, round(step / time_base))
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1  # timestamps must increase for the encoder
                    last_pts = pts
                    time = float((pts - (stream.start_time or 0)) * time_base)
                    if time > options.max_duration:
                        raise VideoTooLargeError(
                            f"{label}: longer than the duration cap of {options.max_duration:g} s"
                        )
                    last_time = time
                    yield Frame(index, int(pts), time, decoded, info)
        except VideoInputError:
            raise
        except av.error.FFmpegError as exc:
            raise CorruptVideoError(
                f"{label}: truncated or corrupt video after {index + 1} frames ({_one_line(exc)})"[
                    :500
                ]
            ) from None
    count = index + 1
    if count == 0:
        raise CorruptVideoError(f"{label}: no frame could be decoded (truncated or corrupt)")
    if info.frames and count < info.frames * 0.98 - 2:  # an edit list may hide a frame or two
        raise CorruptVideoError(
            f"{label}: truncated: {count} of the {info.frames} frames its header announces"
        )
    if info.duration and last_time + step < info.duration - max(2 * step, 0.01 * info.duration):
        raise CorruptVideoError(
            f"{label}: truncated: the frames end at {last_time:.2f} s of the "
            f"{info.duration:.2f} s its header announces"
        )


def _pixels(frame: Any, info: VideoSource) -> np.ndarray:
    """Upright RGB pixels at the stream's size (a frame whose size changed mid-stream is scaled
    to it)."""
    rotation = _rotation(frame)
    if rotation != info.rotation:
        rotation = info.rotation  # one orientation per clip: the header's
    width, height = (info.height, info.width) if rotation % 180 else (info.width, info.height)
    pixels = frame.to_ndarray(format="rgb24", width=width, height=height)
    return _upright(np.asarray(pixels, dtype=np.uint8), rotation)


class VideoWriter:
    """H.264 into a temporary file beside ``path``; :meth:`commit` renames it over ``path``.

    Used as a context manager: leaving the block without :meth:`commit` (an exception anywhere)
    removes the temporary file. Frames keep the timestamps given to :meth:`write` (the source's),
    so the frame rate, variable or not, and the duration are kept.

    ``path`` may instead be a :class:`BinarySink` (an :class:`io.BytesIO`): the clip is then
    encoded in memory as MP4 (without ``+faststart``, which FFmpeg does by reopening the output
    by name; a player given the whole clip, a blob URL, does not need it), no larger than
    ``options.max_bytes`` (:class:`VideoOutputError` beyond), and :meth:`commit` hands the whole
    clip to the sink in one ``write``.
    """

    def __init__(
        self,
        path: VideoTarget,
        *,
        width: int,
        height: int,
        rate: Fraction,
        time_base: Fraction,
        options: VideoOptions | None = None,
        audio_from: VideoSource | None = None,
    ) -> None:
        import av

        options = options or VideoOptions()
        self._closed = False
        self.notes: list[str] = []
        self._sink: BinarySink | None = None
        self._buffer: io.BytesIO | None = None
        self._data: bytes | None = None
        self._max_bytes = options.max_bytes
        if not isinstance(path, str | os.PathLike):
            self._sink = path
            self.path = Path("memory.mp4")  # a name for messages; nothing is opened by it
            self._buffer = io.BytesIO()
            self._tmp: Path | None = None
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".safeview-", suffix=".tmp", dir=self.path.parent)
            os.close(fd)
            self._tmp = Path(tmp)
        matroska = self._buffer is None and self.path.suffix.lower() == ".mkv"
        try:
            if self._buffer is not None:
                # In memory: no faststart (FFmpeg would reopen the output by its name).
                self._container = av.open(self._buffer, "w", format="mp4")
            else:
                assert self._tmp is not None
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self._tmp, 0o666 & ~umask)
                self._container = av.open(
                    str(self._tmp),
                    "w",
                    format="matroska" if matroska else "mp4",
                    options={} if matroska else {"movflags": "+faststart"},
                )
            stream = self._container.add_stream("libx264", rate=rate)
            stream.width, stream.height = width, height
            # 4:2:0 (what every player reads) needs even sizes; odd ones keep every pixel in 4:4:4.
            even = width % 2 == 0 and height % 2 == 0
            stream.pix_fmt = "yuv420p" if even else "yuv444p"
            if not even:
                self.notes.append("odd frame size: encoded in 4:4:4 (some players need 4:2:0)")
            stream.codec_context.time_base = time_base
            stream.options = {"crf": str(options.crf), "preset": options.preset}
            self._stream = stream
            self._time_base = time_base
            self._audio = None
            self._audio_source: Any = None
            if audio_from is not None and audio_from.audio_codec is not None:
                self._open_audio_template(audio_from)
        except BaseException:
            self._discard()
            raise

    def _open_audio_template(self, source: VideoSource) -> None:
        import av

        origin = source.origin
        self._audio_source = av.open(
            io.BytesIO(origin) if isinstance(origin, bytes) else str(origin),
            metadata_errors="ignore",
        )
        template = self._audio_source.streams.audio[0]
        try:
            self._audio = self._container.add_stream_from_template(template)
        except Exception as exc:
            raise VideoOutputError(
                f"{source.name}: cannot copy audio ({template.codec_context.name}) into "
                f"{self.path.suffix}: {_one_line(exc)}; use audio=drop"
            ) from None
        self._audio_time_base = template.time_base

    def write(self, pixels: np.ndarray, pts: int) -> None:
        """Encode one RGB frame with presentation timestamp ``pts`` (in ``time_base`` units)."""
        import av

        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if self._stream.pix_fmt == "yuv420p":
            # OpenCV's conversion (BT.601, as the decoder's) is several times faster than the
            # encoder's own.
            planes = np.asarray(cv2.cvtColor(pixels, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = pts
        frame.time_base = self._time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._check_size()

    def write_frame(self, frame: Frame) -> None:
        """Encode a decoded source frame unchanged (its 4:2:0 planes copied when it has them, so
        that it goes through no colour conversion), with its own timestamp."""
        import av

        planes = frame.planar_yuv420() if self._stream.pix_fmt == "yuv420p" else None
        if planes is None:
            self.write(frame.pixels, frame.pts)
            return
        # A new frame from the planes alone: none of the source's side data or metadata.
        fresh = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        fresh.pts = frame.pts
        fresh.time_base = self._time_base
        for packet in self._stream.encode(fresh):
            self._container.mux(packet)
        self._check_size()

    def write_audio(self, packet: Any) -> None:
        """Copy one demuxed audio packet unchanged."""
        if self._audio is None:
            return
        packet.stream = self._audio
        try:
            self._container.mux(packet)
        except Exception as exc:
            raise VideoOutputError(
                f"cannot copy audio into {self.path.name}: {_one_line(exc)}"
            ) from None
        self._check_size()

    def _check_size(self) -> None:
        """In memory, the output may not grow past the size cap (the memory it holds)."""
        if self._buffer is not None and self._buffer.tell() > self._max_bytes:
            raise VideoOutputError(
                f"the safeguarded clip exceeds the video size cap of {self._max_bytes} bytes"
            )

    def finish(self) -> Path | bytes:
        """Flush the encoder and close the temporary file; returns its path (in memory: the
        clip's bytes), so that the output can be checked before :meth:`commit`."""
        if not self._closed:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._check_size()
            self._close()
            if self._buffer is not None:
                self._data, self._buffer = self._buffer.getvalue(), None
                self._check_bytes_written()
        if self._data is not None:
            return self._data
        assert self._tmp is not None
        return self._tmp

    def _check_bytes_written(self) -> None:
        if self._data is not None and len(self._data) > self._max_bytes:
            raise VideoOutputError(
                f"the safeguarded clip exceeds the video size cap of {self._max_bytes} bytes"
            )

    def commit(self) -> None:
        """Finish, and rename the temporary file over ``path`` (atomically); in memory, hand
        the clip to the sink."""
        self.finish()
        if self._sink is not None:
            assert self._data is not None
            self._sink.write(self._data)
            self._data = None
            self._sink = None
            return
        assert self._tmp is not None
        with open(self._tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self.path)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            finally:
                if self._audio_source is not None:
                    self._audio_source.close()

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        self._buffer = self._data = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if (self._tmp is not None and self._tmp.exists()) or self._sink is not None:
            self._discard()


__all__ = [
    "ALLOWED_CODECS",
    "ALLOWED_CONTAINERS",
    "BinarySink",
    "CorruptVideoError",
    "Frame",
    "UnsupportedVideoError",
    "VideoInput",
    "VideoInputError",
    "VideoOutputError",
    "VideoSource",
    "VideoTarget",
    "VideoTooLargeError",
    "VideoWriter",
    "probe_video",
    "read_frames",
    "sha256_file",
    "sha256_source",
]
