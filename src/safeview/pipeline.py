"""The pipeline: decode -> guard -> attribution -> segments -> greedy search -> render -> Report.

It composes the stages by name and knows none of their internals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from safeview.attribution import AttributionMethod, make_attribution
from safeview.counterfactual import Counterfactual
from safeview.guards import Guard, default_target, is_flagged, load_guard, scores
from safeview.io import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    LoadedImage,
    decode_pixels,
    encode_image,
    load_image,
    output_format,
    resize,
)
from safeview.options import ON_FAILURE, OnFailure, SafeguardOptions
from safeview.render import Blur, bind
from safeview.report import GuardInfo, InputInfo, Region, Report
from safeview.segmentation import segment

__all__ = [
    "ON_FAILURE",
    "GuardError",
    "OnFailure",
    "Pipeline",
    "SafeguardOptions",
    "SearchFailedError",
    "classify",
    "safeguard",
]


class GuardError(ValueError):
    """A guard gave no usable verdict (non-finite scores); nothing is written for that input."""


class SearchFailedError(RuntimeError):
    """Raised by :func:`safeguard` with ``on_failure="error"`` when no flip was found."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.error or "counterfactual search failed")
        self.report = report


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 6)


def score_dict(guard: Guard, probs: np.ndarray, target: int, top_k: int = 5) -> dict[str, float]:
    """All categories of a small guard; the top ``top_k`` and the target for a large one.

    Raises :class:`GuardError` on a non-finite probability: a broken guard's verdict is no
    verdict, and the caller writes nothing (fail closed)."""
    if not np.isfinite(probs).all():
        raise GuardError(
            f"guard {guard.name!r} returned non-finite scores (NaN or inf): "
            "nothing was written (fail closed)"
        )
    if len(guard.categories) <= 10:
        keep = list(range(len(guard.categories)))
    else:
        keep = [int(i) for i in np.argsort(-probs)[:top_k]]
        if target not in keep:
            keep.append(target)
    return {guard.categories[i]: round(float(probs[i]), 6) for i in keep}


def _guard_info(guard: Guard, target: int, threshold: float) -> GuardInfo:
    return GuardInfo(
        name=guard.name,
        version=guard.version,
        decision=guard.decision,
        target=guard.categories[target],
        target_index=target,
        threshold=threshold,
    )


def _input_info(loaded: LoadedImage) -> InputInfo:
    return InputInfo(
        name=loaded.name,
        width=loaded.width,
        height=loaded.height,
        sha256=loaded.sha256,
        format=loaded.format,
        notes=list(loaded.notes),
    )


#: The working image's longer side is at most this many times its target shorter side, so a thin
#: image (1 x 5,000,000) cannot make attribution and segmentation run at full size.
MAX_WORKING_ASPECT = 4


def working_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the shorter side at ``short_side`` and the longer side at most
    ``MAX_WORKING_ASPECT`` times that; never upscales."""
    scale = min(
        1.0, short_side / min(height, width), MAX_WORKING_ASPECT * short_side / max(height, width)
    )
    return max(1, round(height * scale)), max(1, round(width * scale))


class Pipeline:
    """The stages of :class:`SafeguardOptions`, built once and reused for every image.

    The guard is loaded on first use (``load_guard`` keeps it per process and device); the
    segmenter, search and renderer are built here; the attribution method is built once per
    thread (the Grad-CAM family runs a forward pass to find its layer, and its hooks are not
    shared between threads). ``safeguard(image)`` and ``classify(image)`` give the same Reports
    as the functions of the same names.
    """

    def __init__(self, options: SafeguardOptions | None = None, **overrides: Any) -> None:
        options = options or SafeguardOptions()
        self.options = options.replace(**overrides) if overrides else options
        self.segmenter = self.options.make_segmenter()
        self.search = self.options.make_search()
        self.renderer = self.options.make_renderer()
        self._guard: Guard | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def guard(self) -> Guard:
        """The guard, loaded on first use."""
        if self._guard is None:
            with self._lock:
                if self._guard is None:
                    self._guard = load_guard(self.options.guard, self.options.device)
        return self._guard

    @property
    def explainer(self) -> AttributionMethod:
        """The attribution method for the guard, built once per thread."""
        attribution = self.options.attribution
        if not isinstance(attribution, str):
            explainer: AttributionMethod = attribution
            return explainer
        cached = getattr(self._local, "explainer", None)
        if cached is None:
            cached = make_attribution(attribution, self.guard)
            self._local.explainer = cached
        return cached

    def classify(self, image: ImageSource | LoadedImage, *, name: str | None = None) -> Report:
        """Score ``image`` with the guard; the Report carries the scores and whether it is
        flagged."""
        options = self.options
        timings: dict[str, float] = {}
        with _timed(timings, "decode"):
            loaded = (
                image
                if isinstance(image, LoadedImage)
                else load_image(image, name=name, max_pixels=options.max_pixels)
            )
        with _timed(timings, "load_guard"):
            model = self.guard
        with _timed(timings, "classify"):
            probs = scores(model, [loaded.pixels])[0]
        target = default_target(model, probs)
        flagged = bool(is_flagged(model, probs, target, options.threshold)[0])
        timings["total"] = round(sum(timings.values()), 6)
        return Report(
            input=_input_info(loaded),
            guard=_guard_info(model, target, options.threshold),
            flagged=flagged,
            scores_before=score_dict(model, probs, target),
            scores_after=None,
            success=not flagged,
            style="blur",
            timings=timings,
        )

    def safeguard(self, image: ImageSource | LoadedImage, *, name: str | None = None) -> Report:
        """Obfuscate the fewest regions of ``image`` that flip the guard's decision (see
        :func:`safeguard`)."""
        options = self.options
        attribution = options.attribution
        search = options.search
        renderer = self.renderer
        timings: dict[str, float] = {}
        start = time.perf_counter()

        with _timed(timings, "decode"):
            loaded = (
                image
                if isinstance(image, LoadedImage)
                else load_image(image, name=name, max_pixels=options.max_pixels)
            )
        with _timed(timings, "load_guard"):
            model = self.guard
        with _timed(timings, "classify"):
            probs_before = scores(model, [loaded.pixels])[0]
        target = default_target(model, probs_before)
        flagged = bool(is_flagged(model, probs_before, target, options.threshold)[0])
        fmt, _ = output_format(loaded.format)
        report = Report(
            input=_input_info(loaded),
            guard=_guard_info(model, target, options.threshold),
            flagged=flagged,
            scores_before=score_dict(model, probs_before, target),
            style=options.style,
            attribution=attribution if isinstance(attribution, str) else attribution.name,
            segmenter=options.segmenter,
            segmenter_options=dict(options.segmenter_options),
            search=search,
            pruned=options.prune,
            timings=timings,
            output_format=fmt,
        )
        if not flagged:
            # Nothing to hide: re-encode without metadata.
            with _timed(timings, "render"):
                report.encoded = encode_image(loaded.pixels, fmt)
                report.image = loaded.pixels.copy()
            report.scores_after = dict(report.scores_before)
            report.success = True
            self._add_rationale(report, loaded)
            timings["total"] = round(time.perf_counter() - start, 6)
            return report

        height, width = working_shape(
            loaded.height, loaded.width, options.working_size or min(model.input_size)
        )
        working = resize(loaded.pixels, (width, height))
        report.working_size = [width, height]

        with _timed(timings, "attribution"):
            explainer = self.explainer
            heatmap = explainer.attribute(model.preprocess([working]), target)[0]
            heatmap = resize(np.nan_to_num(heatmap.astype(np.float32)), (width, height))
            heatmap = np.clip(heatmap, 0.0, 1.0)
        with _timed(timings, "segmentation"):
            labels = segment(working, self.segmenter, attribution=heatmap)
        report.n_regions = int(labels.max()) + 1
        report.attribution_map = heatmap
        report.labels = labels

        passes = {"search": 0, "verify": 0}

        def predict(images: list[np.ndarray]) -> np.ndarray:
            return scores(model, images, batch_size=max(len(images), 1))

        def still_flagged(probs: np.ndarray) -> np.ndarray:
            return is_flagged(model, probs, target, options.threshold, margin=options.margin)

        with _timed(timings, "search"):
            result = self.search(
                predict, still_flagged, bind(renderer, working), labels, heatmap, working
            )
        report.search_flipped = result.flipped
        report.depth = result.depth
        report.search_stages = [dict(stage) for stage in result.stages]
        passes["search"] = result.images_scored
        total_pixels = labels.size
        report.obfuscated_fraction_unpruned = round(
            float(result.area[result.chosen_unpruned].sum()) / total_pixels, 6
        )

        def render_full(chosen: list[int]) -> tuple[np.ndarray, np.ndarray, bytes]:
            """The output for ``chosen`` at full resolution: mask, pixels, encoded file."""
            with _timed(timings, "render"):
                mask = _full_mask(labels, chosen, loaded.height, loaded.width)
                rendered = renderer.render(loaded.pixels, mask)
                return mask, rendered, encode_image(rendered, fmt)

        def verify(outputs: list[tuple[np.ndarray, np.ndarray, bytes]]) -> np.ndarray:
            """The guard's probabilities on the decoded output files, in one batch."""
            with _timed(timings, "rescore"):
                probs = scores(model, [decode_pixels(data) for _, _, data in outputs])
            passes["verify"] += len(outputs)
            return probs

        def first_verified(candidates: list[list[int]]) -> tuple[Any, ...] | None:
            """The first candidate whose encoded full-resolution output no longer flags, with
            (chosen, mask, pixels, file, probabilities); scored a few at a time."""
            for start_index in range(0, len(candidates), 4):
                chunk = candidates[start_index : start_index + 4]
                outputs = [render_full(candidate) for candidate in chunk]
                probs = verify(outputs)
                flags = is_flagged(model, probs, target, options.threshold)
                for i in range(len(chunk)):
                    if not flags[i]:
                        return (list(chunk[i]), *outputs[i], probs[i])
            return None

        full_mask, output, encoded = render_full(result.chosen)
        probs_after = verify([(full_mask, output, encoded)])[0]
        still = bool(is_flagged(model, probs_after, target, options.threshold)[0])
        if result.flipped and still:
            # A flip found at working resolution can be marginal and not survive full resolution
            # and encoding. Verify the search's larger candidates on the output, smallest first;
            # failing that, search again for a more decisive flip (a wider margin) and verify it.
            held = first_verified(result.fallback_sets)
            for extra in (0.1, 0.25):
                if held is not None:
                    break
                margin = min(0.49, options.margin + extra)

                def decisive(probs: np.ndarray, margin: float = margin) -> np.ndarray:
                    return is_flagged(model, probs, target, options.threshold, margin=margin)

                with _timed(timings, "search"):
                    again = self.search(
                        predict, decisive, bind(renderer, working), labels, heatmap, working
                    )
                passes["search"] += again.images_scored
                if again.flipped:
                    held = first_verified([again.chosen, *again.fallback_sets[:3]])
                    if held is not None:
                        result = again
                        report.warnings.append(
                            "the first flip did not hold at full resolution: searched again "
                            f"with margin {margin:.2f}"
                        )
            if held is None:
                # Last resort before failing closed: grow the set along the attribution order
                # (doubling), short of the whole image, verified on the output.
                grown, k = [], 2
                while k < len(result.order):
                    candidate = sorted(set(result.chosen) | set(result.order[:k]))
                    if len(candidate) < len(result.order):
                        grown.append(candidate)
                    k *= 2
                held = first_verified(grown)
            if held is not None:
                chosen, full_mask, output, encoded, probs_after = held
                still = False
                result.chosen = chosen
                report.obfuscated_fraction_unpruned = max(
                    report.obfuscated_fraction_unpruned,
                    round(float(result.area[chosen].sum()) / total_pixels, 6),
                )
                report.warnings.append(
                    "the working-resolution flip did not hold at full resolution: "
                    f"kept a candidate of {len(chosen)} regions verified on the output"
                )
        report.forward_passes = {
            "classify": 1,
            "attribution": 1,
            "search": passes["search"],
            "verify": passes["verify"],
            "total": 2 + passes["search"] + passes["verify"],
        }
        report.success = result.flipped and not still
        if report.success:
            _fill_regions(report, result, labels, loaded)
            report.mask, report.image, report.encoded = full_mask, output, encoded
            report.scores_after = score_dict(model, probs_after, target)
            report.obfuscated_fraction = round(float(full_mask.mean()), 6)
        else:
            report.error = (
                (
                    f"no flip within {options.max_regions} regions"
                    if search == "greedy"
                    else f"the {search} search found no flip"
                )
                if not result.flipped
                else "the search flipped the decision but the full-resolution output did not"
            )
            _apply_failure_policy(
                report, options.on_failure, result, labels, loaded, output, full_mask, encoded
            )
            if options.on_failure != "error":
                report.scores_after = score_dict(
                    model, scores(model, [decode_pixels(report.encoded or b"")])[0], target
                )
        self._add_rationale(report, loaded)
        report.timings["total"] = round(time.perf_counter() - start, 6)
        if options.on_failure == "error" and not report.success:
            raise SearchFailedError(report)
        return report

    def _add_rationale(self, report: Report, loaded: LoadedImage) -> None:
        _add_rationale(
            report,
            loaded,
            self.options.rationale,
            self.options.rationale_options,
            self.options.device,
        )


def classify(
    image: ImageSource | LoadedImage,
    guard: str | Guard = "open-nsfw",
    *,
    threshold: float = 0.5,
    device: str | torch.device | None = None,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Report:
    """Score ``image`` with ``guard``; the Report carries the scores and whether it is flagged."""
    options = SafeguardOptions(
        guard=guard, threshold=threshold, device=device, max_pixels=max_pixels
    )
    return Pipeline(options).classify(image, name=name)


def safeguard(
    image: ImageSource | LoadedImage,
    options: SafeguardOptions | Mapping[str, Any] | str | Guard | None = None,
    *,
    name: str | None = None,
    **overrides: Any,
) -> Report:
    """Obfuscate the fewest regions of ``image`` that flip ``guard``'s decision.

    ``options`` is a :class:`SafeguardOptions` (or a mapping of them); keywords override it
    (every field of :class:`SafeguardOptions`, e.g. ``safeguard(image, guard="imagenet",
    style="pixelate", style_options={"blocks": 8})``). Images in a loop: build one
    :class:`Pipeline` and call its ``safeguard``. For compatibility, a guard name or object may
    stand in for ``options``.

    Parameters
    ----------
    image:
        A path, encoded bytes, a PIL image or an RGB array.
    name:
        The input's name in the report.
    guard:
        ``"open-nsfw"`` (default), ``"imagenet"``, another registered name, or a Guard object.
    attribution:
        ``"fullgrad"`` (default), ``"gradcam"``, ``"gradcam++"``, ``"xgradcam"``, ``"ablationcam"``.
    segmenter:
        The fine regions: ``"bass-guided"`` (default: BASS superpixels that follow the attribution
        map as well as colour), ``"bass"``, ``"slic"``, ``"felzenszwalb"``, ``"watershed"`` or
        another registered name; ``segmenter_options`` are passed to it.
    style:
        How regions are obfuscated, in the search and in the output: ``"blur"``, ``"pixelate"``,
        ``"fill"``, ``"inpaint"``.
    threshold:
        A threshold guard flags while p(unsafe) >= threshold.
    max_regions:
        Region budget of the ``"greedy"`` search, and the top-n of ``"powerset"``; the
        ``"coarse-to-fine"`` search is bounded by its hierarchy instead.
    search:
        ``"coarse-to-fine"`` (default: a flip on a coarse region hierarchy, refined level by level
        and pruned), ``"greedy"`` (the paper's prefix search by mean attribution) or
        ``"powerset"`` (every subset of the top ``max_regions`` regions in order of area; up to
        2^max_regions forward passes). ``search_options`` override its settings.
    prune:
        Drop chosen regions that are not needed to keep the flip.
    margin:
        The search counts a candidate as flipped only when it clears the decision by this much
        (threshold guards: p < threshold - margin; top-1 guards: another class ahead of the
        target by margin), so the flip survives full resolution and encoding. The output itself
        is verified with the plain rule.
    on_failure:
        When no flip is found within the budget: ``"blur-all"`` (fail closed, default) blurs the
        whole image; ``"keep"`` keeps the obfuscation of the top ``max_regions`` regions;
        ``"error"`` returns no image and raises :class:`SearchFailedError`.
    working_size:
        Shorter side (pixels) at which attribution, segmentation and search run; defaults to the
        guard's input size. The output is always rendered at the original resolution.
    batch_size:
        Candidate images per forward pass in the search (default: the search's own, 4 for
        greedy and coarse-to-fine, 32 for powerset).
    rationale:
        Also explain why, with this backend (``"grounded"``, ``"instructblip"``, ``"openai"``;
        ``rationale_options`` go to it); the result is ``report.rationale``.
    """
    if options is None:
        chosen = SafeguardOptions()
    elif isinstance(options, SafeguardOptions):
        chosen = options
    elif isinstance(options, Mapping):
        chosen = SafeguardOptions.from_mapping(options)
    else:  # the positional guard of the earlier signature
        overrides.setdefault("guard", options)
        chosen = SafeguardOptions()
    return Pipeline(chosen.replace(**overrides) if overrides else chosen).safeguard(
        image, name=name
    )


def _add_rationale(
    report: Report,
    loaded: LoadedImage,
    backend: str | None,
    options: dict[str, Any] | None,
    device: str | torch.device | None,
) -> None:
    if backend is None:
        return
    from safeview.rationale import explain

    with _timed(report.timings, "rationale"):
        result = explain(
            loaded,
            backend,
            report=report,
            device=str(device) if device else None,
            **(options or {}),
        )
    report.rationale = result.to_dict()


def _full_mask(labels: np.ndarray, chosen: list[int], height: int, width: int) -> np.ndarray:
    small = np.isin(labels, chosen).astype(np.uint8)
    return resize(small, (width, height), nearest=True).astype(bool)


def _fill_regions(
    report: Report, result: Counterfactual, labels: np.ndarray, loaded: LoadedImage
) -> None:
    scale_x = loaded.width / labels.shape[1]
    scale_y = loaded.height / labels.shape[0]
    rank = {region: position + 1 for position, region in enumerate(result.order)}
    regions = []
    for region in result.chosen:
        ys, xs = np.nonzero(labels == region)
        regions.append(
            Region(
                id=int(region),
                rank=rank[region],
                mean_attribution=round(float(result.mean_attribution[region]), 6),
                area_fraction=round(float(result.area[region]) / labels.size, 6),
                bbox=[
                    int(np.floor(xs.min() * scale_x)),
                    int(np.floor(ys.min() * scale_y)),
                    min(loaded.width, int(np.ceil((xs.max() + 1) * scale_x))),
                    min(loaded.height, int(np.ceil((ys.max() + 1) * scale_y))),
                ],
            )
        )
    report.regions = sorted(regions, key=lambda r: r.rank)


def _apply_failure_policy(
    report: Report,
    on_failure: str,
    result: Counterfactual,
    labels: np.ndarray,
    loaded: LoadedImage,
    output: np.ndarray,
    full_mask: np.ndarray,
    encoded: bytes,
) -> None:
    report.fallback = on_failure
    fmt = report.output_format or "PNG"
    if on_failure == "blur-all":
        everything = np.ones(loaded.pixels.shape[:2], dtype=bool)
        report.image = Blur().render(loaded.pixels, everything)
        report.mask = everything
        report.encoded = encode_image(report.image, fmt)
        report.obfuscated_fraction = 1.0
        report.warnings.append("search failed: the whole image was blurred (fail-closed)")
    elif on_failure == "keep":
        _fill_regions(report, result, labels, loaded)
        report.image, report.mask, report.encoded = output, full_mask, encoded
        report.obfuscated_fraction = round(float(full_mask.mean()), 6)
        report.warnings.append("search failed: the attempted regions were kept; may be unsafe")
    else:
        report.image = report.mask = report.encoded = None
        report.obfuscated_fraction = 0.0
