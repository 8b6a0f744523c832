"""A clip end to end: sample -> guard -> flagged spans -> key-frame search -> tracked masks ->
verified output -> one Report.

:class:`VideoPipeline` runs two passes over the source, so that memory stays bounded whatever the
length of the clip (no frame is ever written to disk except into the output):

1. **Analyse** (:meth:`VideoPipeline.classify` stops here): every frame is decoded; a colour
   histogram finds scene cuts; every ``sample_every``-th frame, the first frame of each shot and
   the last frame (the *samples*) are scored by every guard of the policy, in batches, but the
   costly ones (``costly_guards``, the OCR), which score a sparser grid of them (every
   ``costly_every`` seconds, cuts, the last frame, samples another guard flags) and, where they
   flag, every sample around (:class:`~safeview.video.sampling.SparseSchedule`). Runs of flagged
   samples, extended to the unflagged samples around them, are the *spans*. The guards are given
   each frame shrunk once by an integer factor that keeps it at least as large as their inputs
   (:meth:`VideoPipeline.view`).
2. **Safeguard and write**: frames outside spans are re-encoded unchanged. Within a span, the image
   pipeline (:meth:`safeview.pipeline.Pipeline.safeguard`) searches the key frames (every
   ``key_every``-th, the span's ends, either side of a cut), and between two keys each frame's
   mask is the union of both keys' masks carried along the optical flow
   (:mod:`safeview.video.tracking`). Every ``verify_every``-th output frame and every key is scored
   again before it is encoded; a frame that still flags becomes a key and its stretch is redone
   (``rekey`` rounds), then the stretch is blurred whole (fail closed) and reported with its time
   range. Finally the written file is decoded and the same verified frames are scored again; a
   span whose encoded frames still flag is redone blurred whole. Only then is the file renamed
   into place.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from safeview.guards.base import is_costly, scores
from safeview.io import LoadedImage
from safeview.options import SafeguardOptions
from safeview.pipeline import (
    Pipeline,
    _category_results,
    _check_finite,
    _guard_info,
)
from safeview.policy import BoundJudge, any_flagged, primary
from safeview.render import Blur, Fill
from safeview.report import InputInfo, Report, VideoInfo, VideoSegment, VideoSpan
from safeview.video.codec import (
    Frame,
    VideoInput,
    VideoSource,
    VideoTarget,
    VideoWriter,
    probe_video,
    read_frames,
    sha256_source,
)
from safeview.video.formats import output_extension
from safeview.video.options import VideoOptions
from safeview.video.sampling import (
    CutDetector,
    Span,
    SparseSchedule,
    flagged_spans,
    key_frames,
)
from safeview.video.tracking import MaskTracker, mask_iou, propagate

#: ``progress(stage, done, total)``; ``total`` is 0 when the header does not say.
Progress = Callable[[str, int, int], None]
#: ``on_frame(index, pixels, mask)``: each output frame as it is written: in a flagged span its
#: obfuscated pixels and mask, elsewhere (None, None): the frame as it was.
OnFrame = Callable[[int, "np.ndarray | None", "np.ndarray | None"], None]

_CONTAINER_NAMES = {"mov,mp4,m4a,3gp,3g2,mj2": "MP4", "matroska,webm": "MATROSKA", "avi": "AVI"}


class VideoSearchFailedError(RuntimeError):
    """Raised with ``on_failure="error"`` when a key frame's search found no flip, or a stretch
    still flagged after re-keying: nothing was written."""

    def __init__(self, message: str, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Sample:
    """A classified frame: its panel row, its judges and whether any judge flags it. ``guards``
    (indices into the panel's guards) scored it; the row is 0 in the others' columns, and
    ``judges`` are theirs alone."""

    frame: int
    time: float
    row: np.ndarray
    judges: list[BoundJudge]
    flagged: bool
    guards: set[int] = field(default_factory=set)


@dataclass
class Analysis:
    """What the first pass found."""

    source: VideoSource
    sha256: str
    times: list[float]
    cuts: list[int]
    samples: list[Sample]
    spans: list[Span]
    seconds: float
    sampling: list[dict[str, Any]] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.times)

    def end_time(self, frame: int) -> float:
        """When ``frame`` stops being shown (the next frame's time; the last one lasts one
        nominal frame period)."""
        if frame + 1 < len(self.times):
            return self.times[frame + 1]
        return self.times[frame] + 1.0 / self.source.fps

    @property
    def variable_rate(self) -> bool:
        if len(self.times) < 3:
            return False
        steps = np.diff(np.asarray(self.times))
        return bool(steps.max() - steps.min() > 0.1 * float(np.median(steps)))


@dataclass
class _Key:
    """The image pipeline's result on a key frame."""

    mask: np.ndarray  # full size, bool
    image: np.ndarray
    success: bool
    flagged: bool
    seconds: float


@dataclass
class _Output:
    frame: Frame
    pixels: np.ndarray
    mask: np.ndarray | None  # None: the frame as it was


@dataclass
class _SpanStats:
    keys: set[int] = field(default_factory=set)
    key_regions: list[dict[str, Any]] = field(default_factory=list)
    rekeyed: list[int] = field(default_factory=list)
    searches_failed: list[int] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    verified: list[int] = field(default_factory=list)
    verified_rows: list[np.ndarray] = field(default_factory=list)
    still_flagged: int = 0
    encoded_frames: int = 0
    encoded_flagged: int = 0
    fallbacks: list[tuple[int, int, str]] = field(default_factory=list)
    unsafe_kept: bool = False
    blurred_whole: int = 0


class _SpanRun:
    """One span during the second pass: buffers the frames from one key to the next, then masks,
    renders and verifies them (see the module's docstring)."""

    def __init__(self, owner: VideoPipeline, span: Span, keys: list[int], forced: bool) -> None:
        self.owner = owner
        self.span = span
        self.keys = set(keys)
        self.forced = forced
        self.buffer: list[Frame] = []
        self.results: dict[int, _Key] = {}
        self.greys: dict[int, np.ndarray] = {}
        self.flows: dict[tuple[int, int], np.ndarray] = {}
        self.stats = _SpanStats()
        self._previous_small: np.ndarray | None = None
        judges: dict[tuple[int, int, float], BoundJudge] = {}
        for sample in owner.analysis_samples(span):
            for judge in sample.judges:
                judges.setdefault((judge.offset, judge.target, judge.threshold), judge)
        self.judges = list(judges.values())

    def feed(self, frame: Frame) -> list[_Output]:
        self.buffer.append(frame)
        if frame.index == self.span.end:
            outputs, self.buffer = self._chunk(self.buffer, last=True), []
            self._forget(frame.index + 1)
            return outputs
        if frame.index in self.keys and len(self.buffer) > 1:
            outputs, self.buffer = self._chunk(self.buffer, last=False), [frame]
            self._forget(frame.index)
            return outputs
        return []

    def _forget(self, first: int) -> None:
        """Drop what was kept for frames before ``first`` (keys' masks and images, small frames,
        flow fields): memory stays bounded by one stretch, whatever the span's length."""
        self.results = {i: r for i, r in self.results.items() if i >= first}
        self.greys = {i: g for i, g in self.greys.items() if i >= first}
        self.flows = {k: f for k, f in self.flows.items() if min(k) >= first}

    # -- one stretch between two keys ---------------------------------------------------------

    def _chunk(self, frames: list[Frame], *, last: bool) -> list[_Output]:
        emit = frames if last else frames[:-1]
        if self.forced:
            return self._fallback(emit, "the encoded output still flagged: blurred whole")
        owner, options = self.owner, self.owner.video
        positions = {0, len(frames) - 1}
        outputs: list[_Output] = []
        for round_ in range(options.rekey + 1):
            for position in sorted(positions):
                self._key(frames[position])
            failed = [
                frames[p].index for p in sorted(positions) if not self._result(frames[p]).success
            ]
            if failed:
                self.stats.searches_failed.extend(
                    f for f in failed if f not in self.stats.searches_failed
                )
                if owner.options.on_failure == "error":
                    raise VideoSearchFailedError(
                        f"{owner.name}: no flip found on key frame(s) {failed} (on_failure=error)"
                    )
                if owner.options.on_failure == "blur-all":
                    return self._fallback(
                        emit, f"the search found no flip on key frame {failed[0]}"
                    )
            outputs = self._render(frames, sorted(positions), len(emit))
            # Once a tracked frame of this stretch has flagged, the flow is not to be trusted
            # here: every frame of it is verified from then on.
            every = 1 if round_ else options.verify_every
            check = [
                i for i, item in enumerate(outputs)
                if (item.frame.index - self.span.start) % every == 0 or i in positions
            ]  # fmt: skip
            rows = owner.score([outputs[i].pixels for i in check])
            flags = any_flagged(self.judges, rows) if len(rows) else np.zeros(0, bool)
            still = [check[k] for k in np.flatnonzero(flags)]
            if not still:
                self._record(outputs, check, rows)
                return outputs
            new = [i for i in still if i not in positions]
            if round_ == options.rekey or not new:
                break
            self.stats.rekeyed.extend(frames[i].index for i in new)
            positions.update(new)
        if owner.options.on_failure == "keep":
            self.stats.unsafe_kept = True
            self._record(outputs, check, rows)
            return outputs
        if owner.options.on_failure == "error":
            raise VideoSearchFailedError(
                f"{owner.name}: frames {[frames[i].index for i in still]} still flagged after "
                f"{options.rekey} re-keying round(s) (on_failure=error)"
            )
        return self._fallback(emit, "a tracked frame still flagged after re-keying")

    def _key(self, frame: Frame) -> None:
        if frame.index in self.results:
            return
        owner = self.owner
        started = time.perf_counter()
        # The search runs on the frame's view (what the guards are given: the frame shrunk by an
        # integer factor, still at least as large as the guards' inputs, and larger than the
        # search's working copy); its mask is enlarged back and rendered on the frame, which
        # is verified at full size with the others.
        view = owner.view(frame.pixels)
        factor = frame.pixels.shape[1] // view.shape[1]
        loaded = LoadedImage(view, f"{owner.name} frame {frame.index}", "JPEG", "")
        report = owner.pipeline.safeguard(loaded)
        height, width = frame.pixels.shape[:2]
        if report.mask is None:
            mask = np.zeros((height, width), bool)
        elif factor == 1:
            mask = report.mask
        else:
            mask = np.asarray(
                cv2.resize(
                    report.mask.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
                )
            ).astype(bool)
        if factor == 1:
            image = report.image if report.image is not None else frame.pixels
        else:
            image = (
                owner.pipeline.renderer.render(frame.pixels, mask) if mask.any() else frame.pixels
            )
        self.results[frame.index] = _Key(
            mask=mask,
            image=image,
            success=report.success,
            flagged=report.flagged,
            seconds=time.perf_counter() - started,
        )
        self.stats.keys.add(frame.index)
        boxes = [region.bbox for region in report.regions]
        self.stats.key_regions.append(
            {
                "frame": frame.index,
                "time": round(frame.time, 6),
                "flagged": report.flagged,
                "flipped": report.success,
                "regions": len(boxes),
                "bbox": [
                    factor * min(b[0] for b in boxes), factor * min(b[1] for b in boxes),
                    factor * max(b[2] for b in boxes), factor * max(b[3] for b in boxes),
                ] if boxes else None,
                "obfuscated_fraction": report.obfuscated_fraction,
                "forward_passes": report.forward_passes.get("total", 0),
            }
        )  # fmt: skip
        owner.timings["search"] = owner.timings.get("search", 0.0) + time.perf_counter() - started

    def _result(self, frame: Frame) -> _Key:
        return self.results[frame.index]

    def _grey(self, frame: Frame) -> np.ndarray:
        if frame.index not in self.greys:
            self.greys[frame.index] = self.owner.tracker.grey(frame.pixels)
        return self.greys[frame.index]

    def _render(self, frames: list[Frame], positions: list[int], count: int) -> list[_Output]:
        """The first ``count`` frames rendered: keys with their searched masks, the frames between
        keys with the keys' masks carried along the flow."""
        owner = self.owner
        tracker, renderer = owner.tracker, owner.pipeline.renderer
        started = time.perf_counter()
        small: dict[int, np.ndarray] = {}
        for a, b in itertools.pairwise(positions):
            if b - a < 2 or a >= count:
                continue
            greys = [self._grey(frame) for frame in frames[a : b + 1]]
            first = tracker.shrink(self._result(frames[a]).mask)
            second = tracker.shrink(self._result(frames[b]).mask)
            inner = propagate(tracker, greys, first, second, self.flows, frames[a].index)
            for offset, coverage in enumerate(inner, start=a + 1):
                small[offset] = tracker.small_mask(coverage)
        outputs = []
        for i, frame in enumerate(frames[:count]):
            if i in positions:
                key = self._result(frame)
                mask = key.mask
                pixels = key.image
            else:
                mask = tracker.enlarge(small[i])
                pixels = renderer.render(frame.pixels, mask) if mask.any() else frame.pixels
            outputs.append(_Output(frame, pixels, mask))
        owner.timings["track_render"] = (
            owner.timings.get("track_render", 0.0) + time.perf_counter() - started
        )
        return outputs

    def _record(self, outputs: list[_Output], check: list[int], rows: np.ndarray) -> None:
        stats = self.stats
        for item in outputs:
            assert item.mask is not None
            stats.fractions.append(float(item.mask.mean()))
            small = self.owner.tracker.nearest(item.mask)
            if self._previous_small is not None:
                iou = mask_iou(self._previous_small, small)
                if iou is not None:
                    stats.ious.append(iou)
            self._previous_small = small
        flags = any_flagged(self.judges, rows) if len(rows) else np.zeros(0, bool)
        for k, i in enumerate(check):
            stats.verified.append(outputs[i].frame.index)
            stats.verified_rows.append(rows[k])
        stats.still_flagged += int(flags.sum())

    def _fallback(self, frames: list[Frame], reason: str) -> list[_Output]:
        """Blur ``frames`` whole (fill them where a blur still flags): fail closed."""
        owner = self.owner
        check = [
            i for i, frame in enumerate(frames)
            if (frame.index - self.span.start) % owner.video.verify_every == 0
        ] or [0]  # fmt: skip
        everything = np.ones(frames[0].pixels.shape[:2], bool)
        outputs = [_Output(f, Blur().render(f.pixels, everything), everything) for f in frames]
        rows = owner.score([outputs[i].pixels for i in check])
        if any_flagged(self.judges, rows).any():
            outputs = [_Output(f, Fill().render(f.pixels, everything), everything) for f in frames]
            rows = owner.score([outputs[i].pixels for i in check])
            reason += "; the blur still flagged, so the frames were filled"
        self.stats.fallbacks.append((frames[0].index, frames[-1].index, reason))
        self.stats.blurred_whole += len(frames)
        self._record(outputs, check, rows)
        return outputs


class _Sampler:
    """Pass 1's scoring: the guards but the costly ones on every sample, in batches; each costly
    guard on its :class:`SparseSchedule`. Feed the samples in order (:meth:`add`)."""

    def __init__(self, owner: VideoPipeline) -> None:
        self.owner = owner
        panel = self.panel = owner.panel
        guards = panel.guards
        names = [guard.name for guard in guards]
        chosen = owner.video.costly(names, {guard.name for guard in guards if is_costly(guard)})
        self.costly = [i for i, guard in enumerate(guards) if guard.name in chosen]
        self.cheap = [i for i in range(len(guards)) if i not in self.costly]
        self.schedules = {i: SparseSchedule(owner.video.costly_every) for i in self.costly}
        self.frames: dict[int, list[int]] = {i: [] for i in self.costly}
        self.counts: dict[int, int] = dict.fromkeys(range(len(guards)), 0)
        self.seconds: dict[int, float] = dict.fromkeys(range(len(guards)), 0.0)
        self.width = sum(len(guard.categories) for guard in guards)
        self.samples: list[Sample] = []

    def add(self, batch: list[tuple[Frame, bool]], *, final: bool = False) -> None:
        """Score ``batch`` (frames and whether each starts a shot); ``final``: its last frame is
        the clip's."""
        if not batch:
            return
        images = [self.owner.view(frame.pixels) for frame, _ in batch]
        rows = np.zeros((len(batch), self.width))
        for index in self.cheap:
            self._score(index, images, rows)
        for k, ((frame, cut), image) in enumerate(zip(batch, images, strict=True)):
            sample = Sample(frame.index, frame.time, rows[k], [], False, set(self.cheap))
            self._judge(sample)
            self.samples.append(sample)
            self._costly(sample, image, cut=cut, last=final and k == len(batch) - 1)

    def _costly(self, sample: Sample, image: np.ndarray, *, cut: bool, last: bool) -> None:
        due = [
            i for i in self.costly
            if self.schedules[i].due(sample.time, cut=cut, last=last, flagged=sample.flagged)
        ]  # fmt: skip
        for index in due:
            self._score_sample(index, sample, image)
        if sample.flagged:  # a costly guard flagged it: every guard scores it
            extra = [i for i in self.costly if i not in due]
            for index in extra:
                self._score_sample(index, sample, image)
            due += extra
        for index in self.costly:
            schedule = self.schedules[index]
            if index not in due:
                schedule.skip((sample, image))
                continue
            flagged = any(
                bool(judge.flags(sample.row)[0])
                for judge in sample.judges
                if judge.guard is self.panel.guards[index]
            )
            for earlier, pixels in schedule.scored(sample.time, flagged, cut=cut):
                self._score_sample(index, earlier, pixels)

    def _score(self, index: int, images: list[np.ndarray], rows: np.ndarray) -> None:
        """Guard ``index``'s probabilities for ``images`` into its columns of ``rows``."""
        guard, offset = self.panel.guards[index], self.panel.offsets[index]
        started = time.perf_counter()
        probabilities = scores(guard, images, batch_size=max(1, len(images)))
        self.seconds[index] += time.perf_counter() - started
        self.counts[index] += len(images)
        rows[:, offset : offset + len(guard.categories)] = probabilities
        _check_finite(self.panel, rows)

    def _score_sample(self, index: int, sample: Sample, image: np.ndarray) -> None:
        """A costly guard scores one sample (``image``: its view): recorded, judged again."""
        self._score(index, [image], sample.row[None])  # a view: writes into the sample's row
        sample.guards.add(index)
        self.frames[index].append(sample.frame)
        self._judge(sample)

    def report(self) -> list[dict[str, Any]]:
        """Which frames each guard scored (``VideoInfo.sampling``)."""
        video = self.owner.video
        entries = []
        for index, guard in enumerate(self.panel.guards):
            costly = index in self.schedules
            entries.append(
                {
                    "guard": guard.name,
                    "costly": costly,
                    "every_frames": None if costly else video.sample_every,
                    "every_seconds": video.costly_every if costly else None,
                    "frames_scored": self.counts[index],
                    "frames": sorted(self.frames[index]) if costly else None,
                    "seconds": round(self.seconds[index], 6),
                }
            )
        return entries

    def _judge(self, sample: Sample) -> None:
        scored = [self.panel.guards[i] for i in sample.guards]
        sample.judges = [
            judge for judge in self.panel.bind(sample.row)
            if any(judge.guard is guard for guard in scored)
        ]  # fmt: skip
        sample.flagged = bool(any_flagged(sample.judges, sample.row)[0]) if sample.judges else False


class VideoPipeline:
    """The stages of :class:`SafeguardOptions` for clips, built once and reused for every clip.

    ``options.video_options`` are the video-specific ones (:class:`VideoOptions`); the guards,
    attribution, segmenter, search and style are the image pipeline's, which runs on the key
    frames (with no rationale; ``on_failure`` applies to the clip's stretches).
    """

    def __init__(
        self, options: SafeguardOptions | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        if options is None:
            options = SafeguardOptions()
        elif not isinstance(options, SafeguardOptions):
            options = SafeguardOptions.from_mapping(options)
        self.options = options.replace(**overrides) if overrides else options
        self.video: VideoOptions = self.options.make_video_options()
        # The key frames' searches: no rationale per frame; failures are the clip's to handle.
        self.pipeline = Pipeline(self.options.replace(on_failure="keep", rationale=None))
        self.timings: dict[str, float] = {}
        self.name = ""
        self._analysis: Analysis | None = None
        self.tracker = MaskTracker(8, 8)

    @property
    def panel(self) -> Any:
        return self.pipeline.panel

    def view_factor(self, height: int, width: int) -> int:
        """The largest integer factor a frame of ``height`` x ``width`` can be shrunk by (sides
        divisible by it) while its shorter side stays at least the largest side of any guard's
        input: 1 when there is none."""
        largest = max(max(guard.input_size) for guard in self.panel.guards)
        factor = max(1, min(height, width) // largest)
        while factor > 1 and (height % factor or width % factor):
            factor -= 1
        return factor

    def view(self, pixels: np.ndarray) -> np.ndarray:
        """What the guards are given for a frame: ``pixels`` shrunk by :meth:`view_factor` with
        an exact box filter (OpenCV's area resampling at an integer factor: a fraction of a
        millisecond), which the guards shrink further to their inputs themselves. It saves each
        guard shrinking the full frame (about 4 ms at 1280x720 for a 224 px input)."""
        height, width = pixels.shape[:2]
        factor = self.view_factor(height, width)
        if factor == 1:
            return pixels
        size = (width // factor, height // factor)
        return np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))

    def score(self, images: list[np.ndarray]) -> np.ndarray:
        """Every guard's probabilities for ``images`` (each given as its :meth:`view`; checked
        finite: a broken guard fails the clip, nothing is written)."""
        if not images:
            return np.zeros((0, 0))
        started = time.perf_counter()
        views = [self.view(image) for image in images]
        rows = np.concatenate(
            [
                self.panel.score(views[i : i + self.video.batch_size])
                for i in range(0, len(views), self.video.batch_size)
            ]
        )
        _check_finite(self.panel, rows)
        self.timings["verify"] = self.timings.get("verify", 0.0) + time.perf_counter() - started
        return rows

    def analysis_samples(self, span: Span) -> list[Sample]:
        assert self._analysis is not None
        wanted = set(span.samples)
        return [s for s in self._analysis.samples if s.frame in wanted]

    # -- pass 1 -------------------------------------------------------------------------------

    def analyse(
        self, source: VideoInput, *, name: str | None = None,
        progress: Progress | None = None,
    ) -> Analysis:  # fmt: skip
        """Decode every frame, find the cuts, classify the samples, and find the flagged spans."""
        started = time.perf_counter()
        video = self.video
        info = probe_video(source, video, name=name)
        self.name = info.name
        detector = CutDetector(video.cut_threshold)
        times: list[float] = []
        cuts: list[int] = []
        sampler = _Sampler(self)
        pending: list[tuple[Frame, bool]] = []
        last: Frame | None = None
        for frame in read_frames(info, video):
            times.append(frame.time)
            cut = detector.is_cut(frame.histogram())
            if cut:
                cuts.append(frame.index)
            if frame.index % video.sample_every == 0 or cut:
                pending.append((frame, cut))
                last = None
            else:
                last = frame
            if len(pending) > video.batch_size:  # the newest waits: it may be the last frame
                sampler.add(pending[:-1])
                del pending[:-1]
            if progress is not None:
                progress("analysing", frame.index + 1, info.frames)
        if last is not None:
            pending.append((last, False))
        sampler.add(pending, final=True)
        # Samples no guard scored (a policy of costly guards only) were kept for dense checks.
        samples = [sample for sample in sampler.samples if sample.guards]
        samples.sort(key=lambda s: s.frame)
        spans = flagged_spans(
            [s.frame for s in samples], [s.flagged for s in samples], set(cuts), len(times) - 1
        )
        self._analysis = Analysis(
            source=info,
            sha256=sha256_source(info),
            times=times,
            cuts=cuts,
            samples=samples,
            spans=spans,
            seconds=time.perf_counter() - started,
            sampling=sampler.report(),
        )
        self.timings["analyse"] = round(time.perf_counter() - started, 6)
        return self._analysis

    def classify(
        self, source: VideoInput, *, name: str | None = None,
        progress: Progress | None = None,
    ) -> Report:  # fmt: skip
        """Score the clip's samples; the Report's ``video.segments`` give the scores per
        stretch, and ``flagged`` whether any sample flags."""
        self.timings = {}
        started = time.perf_counter()
        analysis = self.analyse(source, name=name, progress=progress)
        self.timings["total"] = round(time.perf_counter() - started, 6)
        return self._report(analysis, runs=None, output=None, seconds=self.timings["total"])

    # -- pass 2 -------------------------------------------------------------------------------

    def safeguard(
        self,
        source: VideoInput,
        output: VideoTarget,
        *,
        name: str | None = None,
        progress: Progress | None = None,
        on_frame: OnFrame | None = None,
    ) -> Report:
        """Write the safeguarded clip to ``output`` (atomically: a temporary file in its folder,
        renamed when verified; or, given a :class:`~io.BytesIO`, into it, encoded in memory) and
        return its Report. ``source`` is a path or the clip in memory (bytes or a binary file
        object, never written to disk). See :func:`safeguard_video`."""
        self.timings = {}
        started = time.perf_counter()
        analysis = self.analyse(source, name=name, progress=progress)
        info = analysis.source
        self.tracker = MaskTracker(
            info.height, info.width, method=self.video.flow, flow_size=self.video.flow_size,
            margin=self.video.track_margin,
        )  # fmt: skip
        forced: set[int] = set()
        for attempt in range(2):
            with self._writer(info, output) as writer:
                runs = self._write(analysis, writer, forced, progress, on_frame)
                failing = self._check_encoded(writer.finish(), runs, progress)
                if failing and attempt == 0:
                    forced |= failing
                    continue
                if failing:
                    raise VideoSearchFailedError(
                        f"{info.name}: the encoded output still flagged after blurring whole "
                        "frames; nothing was written"
                    )
                writer.commit()
                notes = writer.notes
                break
        seconds = time.perf_counter() - started
        self.timings["total"] = round(seconds, 6)
        written = str(output) if isinstance(output, str | os.PathLike) else None
        report = self._report(analysis, runs=runs, output=written, seconds=seconds)
        report.input.notes.extend(notes)
        if forced:
            report.warnings.append(
                f"{len(forced)} span(s) still flagged once encoded: they were blurred whole"
            )
        return report

    def _writer(self, info: VideoSource, output: VideoTarget) -> VideoWriter:
        copy = self.video.audio == "copy" and info.audio_codec is not None
        return VideoWriter(
            output,
            width=info.width,
            height=info.height,
            rate=info.rate,
            time_base=info.time_base,
            options=self.video,
            audio_from=info if copy else None,
        )

    def _write(
        self,
        analysis: Analysis,
        writer: VideoWriter,
        forced: set[int],
        progress: Progress | None,
        on_frame: OnFrame | None,
    ) -> list[_SpanRun]:
        info, video = analysis.source, self.video
        runs = [
            _SpanRun(self, span, key_frames(span, video.key_every, set(analysis.cuts)), i in forced)
            for i, span in enumerate(analysis.spans)
        ]
        started = time.perf_counter()
        search_before = self.timings.get("search", 0.0)
        audio = writer.write_audio if video.audio == "copy" and info.audio_codec else None
        position = 0
        count = 0
        for frame in read_frames(info, video, on_audio=audio):
            count += 1
            while position < len(runs) and runs[position].span.end < frame.index:
                position += 1
            run = runs[position] if position < len(runs) else None
            if run is None or frame.index < run.span.start:
                writer.write_frame(frame)
                if on_frame is not None:
                    on_frame(frame.index, None, None)
            else:
                for item in run.feed(frame):
                    writer.write(item.pixels, item.frame.pts)
                    if on_frame is not None:
                        on_frame(item.frame.index, item.pixels, item.mask)
            if progress is not None:
                progress("obfuscating", frame.index + 1, analysis.frames)
        if count != analysis.frames:
            raise RuntimeError(
                f"{info.name}: {count} frames on the second pass, {analysis.frames} on the first "
                "(the file changed meanwhile?); nothing was written"
            )
        spent = time.perf_counter() - started - (self.timings.get("search", 0.0) - search_before)
        self.timings["write"] = round(self.timings.get("write", 0.0) + spent, 6)
        return runs

    def _check_encoded(
        self, path: Path | bytes, runs: list[_SpanRun], progress: Progress | None
    ) -> set[int]:
        """Decode the written file and score the frames verified before encoding; the spans
        (by index) with a frame that still flags once encoded."""
        wanted = {frame: i for i, run in enumerate(runs) for frame in run.stats.verified}
        if not wanted:
            return set()
        started = time.perf_counter()
        written = probe_video(path, self.video, name=f"{self.name} (output)")
        frames: list[tuple[int, np.ndarray]] = []
        failing: set[int] = set()

        def flush() -> None:
            rows = self.score([pixels for _, pixels in frames])
            for (index, _), row in zip(frames, rows, strict=True):
                run = runs[wanted[index]]
                run.stats.encoded_frames += 1
                if bool(any_flagged(run.judges, row)[0]):
                    run.stats.encoded_flagged += 1
                    failing.add(wanted[index])
            frames.clear()

        for frame in read_frames(written, self.video):
            if frame.index in wanted:
                frames.append((frame.index, frame.pixels))
                if len(frames) >= self.video.batch_size:
                    flush()
            if progress is not None:
                progress("checking", frame.index + 1, written.frames)
        if frames:
            flush()
        self.timings["check_output"] = round(
            self.timings.get("check_output", 0.0) + time.perf_counter() - started, 6
        )
        return failing

    # -- the report ---------------------------------------------------------------------------

    def _report(
        self,
        analysis: Analysis,
        *,
        runs: list[_SpanRun] | None,
        output: str | None,
        seconds: float,
    ) -> Report:
        info, video, panel = analysis.source, self.video, self.panel
        samples = analysis.samples
        rows = np.stack([s.row for s in samples])
        before = rows.max(axis=0)
        judges = panel.bind(rows[int(np.argmax([_strength(s) for s in samples]))])
        lead = primary(judges, before[None])
        flagged = any(s.flagged for s in samples)
        spans: list[VideoSpan] = []
        after_rows = [s.row for s in samples if not any(s.frame in span for span in analysis.spans)]
        fractions = np.zeros(analysis.frames)
        blurred = obfuscated = keys = 0
        for run in runs or []:
            spans.append(self._span_report(analysis, run))
            after_rows.extend(run.stats.verified_rows)
            span = run.span
            fractions[span.start : span.start + len(run.stats.fractions)] = run.stats.fractions
            blurred += run.stats.blurred_whole
            obfuscated += sum(1 for f in run.stats.fractions if f > 0)
            keys += len(run.stats.keys)
        safeguarded = runs is not None
        after = np.stack(after_rows).max(axis=0) if safeguarded and after_rows else None
        success = all(s.success for s in spans)
        container = _CONTAINER_NAMES.get(info.container, info.container.upper())
        copied = video.audio == "copy" and info.audio_codec is not None
        warnings = []
        if info.audio_codec is not None and not copied and safeguarded:
            warnings.append("audio dropped (video option audio=copy keeps it)")
        attribution = self.options.attribution
        report = Report(
            input=InputInfo(
                name=info.name,
                width=info.width,
                height=info.height,
                sha256=analysis.sha256,
                format=container,
                notes=list(info.notes),
            ),
            guard=_guard_info(lead.guard, lead.target, lead.threshold),
            policy=panel.policy.name if panel.policy is not None else None,
            categories=_category_results(panel, judges, before[None], after),
            flagged=flagged,
            scores_before=self.pipeline.scores_of(judges, before[None]),
            scores_after=self.pipeline.scores_of(judges, after[None])
            if after is not None
            else None,
            success=success if safeguarded else not flagged,
            obfuscated_fraction=round(float(fractions.mean()), 6) if safeguarded else 0.0,
            style=self.options.style,
            fallback=_fallback_of(spans, runs or []),
            attribution=attribution if isinstance(attribution, str) else attribution.name,
            segmenter=self.options.segmenter if safeguarded else None,
            segmenter_options=dict(self.options.segmenter_options) if safeguarded else {},
            search=self.options.search if safeguarded else None,
            pruned=self.options.prune,
            timings=dict(self.timings),
            output=output,
            warnings=warnings,
            output_format=(
                # in memory (no output path): always MP4
                output_extension((info.path or output) if output else "").lstrip(".").upper()
                if safeguarded
                else None
            ),
            video=VideoInfo(
                container=container,
                codec=info.codec,
                fps=round(info.fps, 6),
                frames=analysis.frames,
                duration=round(analysis.end_time(analysis.frames - 1) - analysis.times[0], 6),
                width=info.width,
                height=info.height,
                output_codec="h264" if safeguarded else None,
                rotation=info.rotation,
                variable_frame_rate=analysis.variable_rate,
                audio="none"
                if info.audio_codec is None
                else ("copied" if copied and safeguarded else "dropped"),
                audio_codec=info.audio_codec,
                sample_every=video.sample_every,
                key_every=video.key_every,
                verify_every=video.verify_every,
                scene_cuts=list(analysis.cuts),
                samples=len(samples),
                flagged_samples=sum(s.flagged for s in samples),
                segments=self._segments(analysis),
                spans=spans,
                frames_obfuscated=obfuscated,
                frames_blurred_whole=blurred,
                frames_unchanged=analysis.frames - sum(r.span.frames for r in runs or []),
                key_frames=keys,
                frames_per_second=round(analysis.frames / seconds, 3) if seconds > 0 else None,
                sampling=analysis.sampling,
            ),
        )
        if info.rotation:
            report.input.notes.append(
                f"rotation metadata ({info.rotation} degrees) applied to the pixels"
            )
        if analysis.variable_rate:
            report.input.notes.append("variable frame rate: every frame keeps its timestamp")
        if any(r.stats.unsafe_kept for r in runs or []):
            report.error = "some tracked frames still flagged (on_failure=keep): may be unsafe"
        return report

    def _span_report(self, analysis: Analysis, run: _SpanRun) -> VideoSpan:
        span, stats = run.span, run.stats
        flagged_samples = [s for s in self.analysis_samples(span) if s.flagged]
        categories: list[str] = []
        for sample in flagged_samples:
            for judge in sample.judges:
                if bool(judge.flags(sample.row)[0]) and judge.category not in categories:
                    categories.append(judge.category)
        before = _max_scores(
            [self.pipeline.scores_of(s.judges, s.row[None]) for s in flagged_samples]
        )
        after = (
            _max_scores([self.pipeline.scores_of(run.judges, r[None]) for r in stats.verified_rows])
            if stats.verified_rows
            else None
        )
        fallback_ranges = [
            {
                "start_frame": a,
                "end_frame": b,
                "start_time": round(analysis.times[a], 6),
                "end_time": round(analysis.end_time(b), 6),
                "reason": reason,
            }
            for a, b, reason in stats.fallbacks
        ]
        fractions = stats.fractions or [0.0]
        clean = stats.still_flagged == 0 and stats.encoded_flagged == 0
        return VideoSpan(
            start_frame=span.start,
            end_frame=span.end,
            start_time=round(analysis.times[span.start], 6),
            end_time=round(analysis.end_time(span.end), 6),
            success=clean and not stats.fallbacks and not stats.unsafe_kept,
            categories=categories,
            scores_before=before,
            scores_after=after,
            key_frames=sorted(stats.keys),
            regions=sorted(stats.key_regions, key=lambda entry: entry["frame"]),
            rekeyed=sorted(stats.rekeyed),
            searches_failed=sorted(stats.searches_failed),
            obfuscated_fraction=round(float(np.mean(fractions)), 6),
            obfuscated_fraction_max=round(float(np.max(fractions)), 6),
            verification={
                "frames": len(stats.verified),
                "flagged": stats.still_flagged,
                "encoded_frames": stats.encoded_frames,
                "encoded_flagged": stats.encoded_flagged,
            },
            fallback="blur-all" if stats.fallbacks else None,
            fallback_ranges=fallback_ranges,
            mask_iou=round(float(np.mean(stats.ious)), 6) if stats.ious else None,
        )

    def _segments(self, analysis: Analysis) -> list[VideoSegment]:
        """Runs of samples with the same verdict within a shot, with their highest scores."""
        cuts = set(analysis.cuts)
        groups: list[list[Sample]] = []
        for sample in analysis.samples:
            if groups and groups[-1][-1].flagged == sample.flagged and sample.frame not in cuts:
                groups[-1].append(sample)
            else:
                groups.append([sample])
        segments = []
        for i, group in enumerate(groups):
            end = groups[i + 1][0].frame - 1 if i + 1 < len(groups) else analysis.frames - 1
            segments.append(
                VideoSegment(
                    start_frame=group[0].frame,
                    end_frame=end,
                    start_time=round(analysis.times[group[0].frame], 6),
                    end_time=round(analysis.end_time(end), 6),
                    flagged=group[0].flagged,
                    scores=_max_scores(
                        [self.pipeline.scores_of(s.judges, s.row[None]) for s in group]
                    ),
                    samples=len(group),
                )
            )
        return segments


def _fallback_of(spans: list[VideoSpan], runs: list[_SpanRun]) -> str | None:
    """The clip's fallback: ``"blur-all"`` when any stretch was blurred whole, ``"keep"`` when
    a stretch that still flags was kept as asked, else None."""
    if any(span.fallback for span in spans):
        return "blur-all"
    if any(run.stats.unsafe_kept for run in runs):
        return "keep"
    return None


def _strength(sample: Sample) -> float:
    return max(judge.strength(sample.row[None]) for judge in sample.judges)


def _max_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for entry in scores:
        for key, value in entry.items():
            best[key] = max(best.get(key, 0.0), value)
    return best


def safeguard_video(
    source: VideoInput,
    output: VideoTarget,
    options: SafeguardOptions | Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> Report:
    """Hide what the guards flag in the clip at ``source``; write the result to ``output``.

    Frames the guards do not flag are re-encoded unchanged; in flagged spans, the image pipeline's
    minimal obfuscation is searched on key frames and follows the content in between, verified
    on a sample of output frames before and after encoding, and blurred whole where it cannot be
    verified (fail closed). ``output`` is written atomically (H.264 in MP4, or Matroska for
    Matroska sources), with no metadata of the source and, unless
    ``video_options={"audio": "copy"}``, no audio. Clips in a loop: build one
    :class:`VideoPipeline`.

    Parameters
    ----------
    options:
        A :class:`SafeguardOptions` (or a mapping of them); keywords override it. The video
        options are ``video_options`` (:class:`VideoOptions`: sampling, key frames, verification,
        flow, audio, encoding, caps).
    progress:
        ``progress(stage, done, total)`` as frames are analysed, safeguarded and checked.

    Raises
    ------
    VideoInputError
        An unreadable, truncated, empty or unsupported file, or one over a cap; nothing written.
    VideoSearchFailedError
        With ``on_failure="error"``, when a stretch cannot be verified; nothing written.
    """
    return VideoPipeline(options, **overrides).safeguard(
        source, output, name=name, progress=progress
    )


def classify_video(
    source: VideoInput,
    options: SafeguardOptions | Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> Report:
    """Score the clip's samples with every guard; ``report.video.segments`` has the scores of
    each stretch (runs of samples with the same verdict, within a shot)."""
    return VideoPipeline(options, **overrides).classify(source, name=name, progress=progress)


__all__ = [
    "Analysis",
    "Progress",
    "Sample",
    "VideoPipeline",
    "VideoSearchFailedError",
    "classify_video",
    "safeguard_video",
]
