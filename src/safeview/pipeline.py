"""The pipeline: decode -> guard -> attribution -> segments -> search -> verify -> Report.

:class:`Pipeline` builds the stages of one :class:`SafeguardOptions` once and composes them by
name, knowing none of their internals. ``safeguard()`` runs steps that each return a result:
``_score`` (decode and classify, shared with ``classify()``) -> :class:`Scored`; ``_segment``
(attribution and fine regions of the working copy) -> :class:`Segmented`; ``_search``
(``counterfactual.search_verified``: the search, verified on the encoded full-resolution output)
-> :class:`~safeview.counterfactual.Verified`; ``_outcome`` (the verified flip, or the failure
policy's output) -> :class:`Outcome`. :func:`_build_report` makes the Report from them, once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from safeview.attribution import AttributionMethod, make_attribution
from safeview.counterfactual import Counterfactual, Rendered, Verified, search_verified
from safeview.counterfactual.gradient import GradientJudge, RegionGradient, region_gradient
from safeview.counterfactual.inputs import GuardDeltas, guard_deltas
from safeview.guards import Guard, heatmap_to_image
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
from safeview.policy import BoundJudge, GuardPanel, any_flagged, primary
from safeview.protect import Protection, find_protected, protect_attribution, protected_report
from safeview.render import Blur, Fill, bind, composite, is_layered
from safeview.report import CategoryResult, GuardInfo, InputInfo, Region, Report
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


#: A segmentation with more regions than this is refused: it bounds the cost of any search
#: (a felzenszwalb with scale 0 makes tens of thousands of one-pixel regions).
MAX_REGIONS_SEARCHED = 2000

#: The working image's longer side is at most this many times its target shorter side, so a thin
#: image (1 x 5,000,000) cannot make attribution and segmentation run at full size.
MAX_WORKING_ASPECT = 4
#: A flip that held on the output only once grown is pruned again on the output rendered and
#: encoded at most this long (full resolution below it, where the pruned flip holds by
#: construction; above it, an approximation that the real output then verifies).
OUTPUT_PROXY_SIDE = 800


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
        self._panel: GuardPanel | None = None
        self._protectors: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def panel(self) -> GuardPanel:
        """The guard, or every guard of the policy, loaded on first use."""
        if self._panel is None:
            with self._lock:
                if self._panel is None:
                    options = self.options
                    self._panel = GuardPanel(
                        guard=options.guard,
                        policy=options.policy,
                        threshold=options.threshold,
                        device=options.device,
                    )
        return self._panel

    @property
    def protectors(self) -> dict[str, Any]:
        """The detectors of ``options.protect`` by name, built on first use."""
        if self._protectors is None:
            with self._lock:
                if self._protectors is None:
                    from safeview.detectors import make_detector

                    self._protectors = {name: make_detector(name) for name in self.options.protect}
        return self._protectors

    @property
    def guard(self) -> Guard:
        """The guard (with a policy: its first guard), loaded on first use."""
        return self.panel.guards[0]

    @property
    def guards(self) -> list[Guard]:
        """Every guard the pipeline scores with, loaded on first use."""
        return list(self.panel.guards)

    @property
    def explainer(self) -> AttributionMethod:
        """The attribution method for the (first) guard, built once per thread."""
        return self.explainer_for(self.guard)

    def explainer_for(self, guard: Guard) -> AttributionMethod:
        """The attribution method for ``guard``, built once per thread."""
        attribution = self.options.attribution
        if not isinstance(attribution, str):
            explainer: AttributionMethod = attribution
            return explainer
        cached: dict[int, AttributionMethod] | None = getattr(self._local, "explainers", None)
        if cached is None:
            cached = self._local.explainers = {}
        if id(guard) not in cached:
            cached[id(guard)] = make_attribution(attribution, guard)
        return cached[id(guard)]

    def _score(
        self, image: ImageSource | LoadedImage, name: str | None, timings: dict[str, float]
    ) -> Scored:
        """Decode ``image`` and score it with every guard (the step classify and safeguard
        share)."""
        options = self.options
        with _timed(timings, "decode"):
            loaded = (
                image
                if isinstance(image, LoadedImage)
                else load_image(image, name=name, max_pixels=options.max_pixels)
            )
        with _timed(timings, "load_guard"):
            panel = self.panel
        with _timed(timings, "classify"):
            row = panel.score([loaded.pixels])
        _check_finite(panel, row)
        judges = panel.bind(row)
        lead = primary(judges, row)
        flagged = bool(any_flagged(judges, row)[0])
        return Scored(
            loaded=loaded,
            model=lead.guard,
            probs=lead.probabilities(row)[0],
            target=lead.target,
            flagged=flagged,
            scores_before=self._score_dict(judges, lead, row),
            judges=judges,
            lead=lead,
            row=row[0],
        )

    def _score_dict(
        self, judges: list[BoundJudge], lead: BoundJudge, row: np.ndarray
    ) -> dict[str, float]:
        """One guard: its categories (the top 5 and the target of a large one). A policy: each
        covered category's highest score among its judges."""
        if self.panel.single:
            return score_dict(lead.guard, lead.probabilities(row)[0], lead.target)
        best: dict[str, float] = {}
        for judge in judges:
            value = round(float(judge.score(row)[0]), 6)
            best[judge.category] = max(best.get(judge.category, 0.0), value)
        return best

    def scores_of(self, judges: list[BoundJudge], row: np.ndarray) -> dict[str, float]:
        """A panel row in the report's form (``scores_before``/``scores_after``): one guard's
        categories, or a policy's categories with each one's highest judge score."""
        return self._score_dict(judges, primary(judges, row), row)

    def classify(self, image: ImageSource | LoadedImage, *, name: str | None = None) -> Report:
        """Score ``image`` with the guard; the Report carries the scores and whether it is
        flagged."""
        timings: dict[str, float] = {}
        scored = self._score(image, name, timings)
        timings["total"] = round(sum(timings.values()), 6)
        return Report(
            input=_input_info(scored.loaded),
            guard=_guard_info(scored.model, scored.target, scored.lead.threshold),
            flagged=scored.flagged,
            scores_before=scored.scores_before,
            scores_after=None,
            success=not scored.flagged,
            style="blur",
            timings=timings,
            policy=self.panel.policy.name if self.panel.policy is not None else None,
            categories=_category_results(self.panel, scored.judges, scored.row, None),
        )

    def safeguard(self, image: ImageSource | LoadedImage, *, name: str | None = None) -> Report:
        """Obfuscate the fewest regions of ``image`` that flip the guard's decision (see
        :func:`safeguard`)."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        scored = self._score(image, name, timings)
        fmt, _ = output_format(scored.loaded.format)
        segmented = verified = None
        if not scored.flagged:
            with _timed(timings, "render"):  # nothing to hide: re-encode without metadata
                encoded = encode_image(scored.loaded.pixels, fmt)
                pixels, after = scored.loaded.pixels.copy(), dict(scored.scores_before)
            outcome = Outcome(True, pixels, None, encoded, scores_after=after, row_after=scored.row)
        else:
            segmented = self._segment(scored, timings)
            verified = self._search(scored, segmented, fmt, timings)
            outcome = self._outcome(scored, segmented, verified, fmt)
        report = _build_report(
            self.options, self.panel, scored, fmt, outcome, segmented, verified, timings
        )
        self._add_rationale(report, scored.loaded)
        timings["total"] = round(time.perf_counter() - start, 6)
        if self.options.on_failure == "error" and not report.success:
            raise SearchFailedError(report)
        return report

    def _segment(self, scored: Scored, timings: dict[str, float]) -> Segmented:
        """Attribution and fine regions, on the working copy (at the largest input size of the
        flagged judges' guards). With several flagged judges (a policy), a region matters when it
        matters to any of them: their maps' maximum."""
        loaded = scored.loaded
        flagged = scored.flagged_judges
        short_side = self.options.working_size or max(
            min(judge.guard.input_size) for judge in flagged
        )
        height, width = working_shape(loaded.height, loaded.width, short_side)
        working = resize(loaded.pixels, (width, height))
        with _timed(timings, "attribution"):
            maps = []
            for judge in flagged:
                explainer = self.explainer_for(judge.guard)
                one = explainer.attribute(judge.guard.preprocess([working]), judge.target)[0]
                one = heatmap_to_image(
                    judge.guard, np.nan_to_num(one.astype(np.float32)), height, width
                )
                maps.append(np.clip(one, 0.0, 1.0))
            heatmap = np.max(maps, axis=0)
        protection = protected = None
        if self.options.protect:
            # Protected boxes (faces): ranked last by the search, dropped first by its pruning.
            with _timed(timings, "protect"):
                protection = find_protected(loaded.pixels, self.protectors)
                protected = protection.mask(
                    height, width, width / loaded.width, height / loaded.height
                )
                heatmap = protect_attribution(heatmap, protected)
        with _timed(timings, "segmentation"):
            labels = segment(working, self.segmenter, attribution=heatmap)
            # A guard that knows where its evidence lies (a detector guard: the words of a line,
            # a finger) has each piece cut in as one region: hidden whole, or not at all.
            pieces = [
                mask
                for judge in flagged
                if callable(getattr(judge.guard, "unsafe_masks", None))
                for mask in judge.guard.unsafe_masks(working)  # type: ignore[attr-defined]
            ]
            if pieces:
                labels = carve(labels, pieces)
        regions = int(labels.max()) + 1
        if regions > MAX_REGIONS_SEARCHED:
            raise ValueError(
                f"segmenter {self.options.segmenter!r} made {regions} regions, more than the "
                f"{MAX_REGIONS_SEARCHED} a search may consider: choose fewer or larger segments"
            )
        return Segmented(
            working,
            [width, height],
            heatmap,
            labels,
            attributions=len(maps),
            protection=protection,
            protected=protected,
        )

    def _search(
        self, scored: Scored, segmented: Segmented, fmt: str, timings: dict[str, float]
    ) -> Verified:
        """The search, verified on the encoded full-resolution output (``search_verified``),
        against every judge: a candidate flips when no judge flags it any more."""
        loaded, judges, panel = scored.loaded, scored.judges, self.panel
        labels, renderer = segmented.labels, self.renderer

        # Candidates are scored by the guards that flagged; the others read as on the original
        # (a costly detector that found nothing is not run on every candidate). The output is
        # verified with every guard, so a candidate that makes another guard flag never passes.
        active = {panel.index_of(judge.guard) for judge in scored.flagged_judges}

        def predict(images: list[np.ndarray]) -> np.ndarray:
            return panel.score(images, only=active, fill=scored.row)

        def flagged(probs: np.ndarray, margin: float) -> np.ndarray:
            return any_flagged(judges, probs, margin)

        # The output as the guards will see it: rendered at full resolution, or at
        # OUTPUT_PROXY_SIDE where that is costly (made on first use: most images never need it).
        scale = min(1.0, OUTPUT_PROXY_SIDE / max(loaded.height, loaded.width))
        proxy_h, proxy_w = max(1, round(loaded.height * scale)), max(1, round(loaded.width * scale))
        proxy = _Proxy(loaded.pixels, labels, renderer, proxy_h, proxy_w, fmt)
        # Candidates composed in the guards' input space from each region's change to that
        # output (safeview.counterfactual.inputs): cheaper than rendering each one, and what the
        # output will be, so a flip found holds there; rendered on the working copy when a guard
        # or the style does not allow it.
        deltas = _OutputDeltas(panel, active, scored.flagged_judges, renderer, proxy)
        working_render = bind(renderer, segmented.working)

        def score_sets(sets: list[list[int]]) -> np.ndarray:
            inputs = deltas.inputs(sets)
            if inputs is None:
                return predict([working_render(np.isin(labels, chosen)) for chosen in sets])
            return panel.score_inputs(inputs, fill=scored.row)

        extra: dict[str, Any] = {}
        if segmented.protected is not None and _accepts(self.search, "protected"):
            extra["protected"] = segmented.protected
        gradient = _region_gradient(
            scored.flagged_judges, working_render, labels, segmented.working, deltas.for_judge
        )
        if _accepts(self.search, "region_gradient", by_name=True):
            extra["region_gradient"] = gradient
        if _accepts(self.search, "score_sets", by_name=True):
            extra["score_sets"] = score_sets

        def search(*arguments: Any) -> Counterfactual:
            with _timed(timings, "search"):
                return self.search(*arguments, **extra)

        full_render: list[Callable[[np.ndarray], np.ndarray]] = []  # bound on first use

        def render_full(chosen: list[int]) -> Rendered:
            with _timed(timings, "render"):
                if not full_render:
                    full_render.append(bind(renderer, loaded.pixels))
                mask = _full_mask(labels, chosen, loaded.height, loaded.width)
                rendered = full_render[0](mask)
                return Rendered(mask, rendered, encode_image(rendered, fmt))

        def verify(outputs: list[Rendered]) -> np.ndarray:
            with _timed(timings, "rescore"):
                return panel.score([decode_pixels(output.encoded) for output in outputs])

        def score_output(sets: list[list[int]]) -> np.ndarray:
            """The output hiding each set, encoded and decoded, scored by every guard."""
            with _timed(timings, "rescore"):
                outputs = [proxy.render(chosen) for chosen in sets]
                coded = [encode_image(o, fmt, optimize=False) for o in outputs]
                return panel.score([decode_pixels(data) for data in coded])

        working = segmented.working
        return search_verified(
            search, predict, flagged, working_render, render_full, verify,
            labels, segmented.attribution, working, margin=self.options.margin,
            region_gradient=gradient, score_output=score_output,
        )  # fmt: skip

    def _outcome(
        self, scored: Scored, segmented: Segmented, verified: Verified, fmt: str
    ) -> Outcome:
        """The output: the verified flip, or what the failure policy makes of no flip."""
        options, judges, panel = self.options, scored.judges, self.panel
        if verified.success:
            return Outcome(
                success=True,
                image=verified.image,
                mask=verified.mask,
                encoded=verified.encoded,
                scores_after=self._score_dict(judges, scored.lead, verified.probabilities),
                row_after=np.asarray(verified.probabilities),
                obfuscated_fraction=round(float(verified.mask.mean()), 6),
                regions=_regions(verified.counterfactual, segmented.labels, scored.loaded),
                warnings=list(verified.warnings),
            )
        error = _failure_message(options, verified.counterfactual.flipped)
        outcome = _apply_failure_policy(
            options.on_failure, verified, segmented.labels, scored.loaded, fmt
        )
        if options.on_failure == "error":
            return dataclasses.replace(outcome, error=error)
        row = panel.score([decode_pixels(outcome.encoded or b"")])
        if options.on_failure == "blur-all" and bool(any_flagged(judges, row)[0]):
            # Blur changes nothing on a tiny or single-colour image: the "fail-closed" output
            # would be the original. Fill it instead; nothing of the original remains.
            everything = np.ones(scored.loaded.pixels.shape[:2], dtype=bool)
            filled = Fill().render(scored.loaded.pixels, everything)
            encoded = encode_image(filled, fmt)
            row = panel.score([decode_pixels(encoded)])
            outcome = dataclasses.replace(
                outcome,
                image=filled,
                encoded=encoded,
                warnings=[
                    *outcome.warnings,
                    "the blurred image still flagged: the whole image was filled instead",
                ],
            )
        _check_finite(panel, row)
        return dataclasses.replace(
            outcome,
            error=error,
            scores_after=self._score_dict(judges, scored.lead, row),
            row_after=row[0],
        )

    def _add_rationale(self, report: Report, loaded: LoadedImage) -> None:
        """With ``options.rationale``: why it was flagged, as ``report.rationale``."""
        options = self.options
        if options.rationale is None:
            return
        from safeview.rationale import explain

        with _timed(report.timings, "rationale"):
            result = explain(
                loaded,
                options.rationale,
                report=report,
                device=str(options.device) if options.device else None,
                **(options.rationale_options or {}),
            )
        report.rationale = result.to_dict()


def classify(
    image: ImageSource | LoadedImage,
    guard: str | Guard | None = None,
    *,
    policy: Any = None,
    threshold: float = 0.5,
    device: str | torch.device | None = None,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Report:
    """Score ``image`` with ``guard``, or with every guard of ``policy`` (default: the built-in
    policy); the Report carries the scores, each category and whether it is flagged."""
    options = SafeguardOptions(
        guard=guard, policy=policy, threshold=threshold, device=device, max_pixels=max_pixels
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
        One guard: ``"open-nsfw"``, ``"imagenet"``, another registered name, or a Guard object.
    policy:
        Without ``guard``: the policy whose every category is checked (default: the built-in
        one; a name or a JSON file). When several categories flag, the output hides what flips
        all of them, verified against every guard of the policy.
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


@dataclass
class Scored:
    """The decoded input and the guard's verdict on it."""

    loaded: LoadedImage
    model: Guard
    probs: np.ndarray
    target: int
    flagged: bool
    #: The report's form of ``probs`` (checked finite: a broken guard fails before any work).
    scores_before: dict[str, float]
    #: Every judge (one for a single guard), the one the report names, and the panel's row.
    judges: list[BoundJudge]
    lead: BoundJudge
    row: np.ndarray

    @property
    def flagged_judges(self) -> list[BoundJudge]:
        return [judge for judge in self.judges if bool(judge.flags(self.row)[0])]


@dataclass
class Segmented:
    """The working copy, its attribution map for the target and its fine regions."""

    working: np.ndarray
    size: list[int]  # [width, height]
    attribution: np.ndarray
    labels: np.ndarray
    #: Attribution maps computed (one per flagged judge).
    attributions: int = 1
    #: With ``options.protect``: the protected detections, and their boxes at working size.
    protection: Protection | None = None
    protected: np.ndarray | None = None


@dataclass
class Outcome:
    """The output and what the report says of it: a verified flip, the image unchanged, or the
    failure policy's result."""

    success: bool
    image: np.ndarray | None
    mask: np.ndarray | None
    encoded: bytes | None
    obfuscated_fraction: float = 0.0
    regions: list[Region] = field(default_factory=list)
    scores_after: dict[str, float] | None = None
    fallback: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: Every guard's probabilities on the output (the panel's row), for the per-category report.
    row_after: np.ndarray | None = None


def _check_finite(panel: GuardPanel, row: np.ndarray) -> None:
    """Raise :class:`GuardError` naming the guard whose probabilities are not finite: a broken
    guard's verdict is no verdict, and nothing is written (fail closed)."""
    row = np.atleast_2d(row)
    for guard, offset in zip(panel.guards, panel.offsets, strict=True):
        if not np.isfinite(row[:, offset : offset + len(guard.categories)]).all():
            raise GuardError(
                f"guard {guard.name!r} returned non-finite scores (NaN or inf): "
                "nothing was written (fail closed)"
            )


def _category_results(
    panel: GuardPanel, bound: list[BoundJudge], row: np.ndarray, after: np.ndarray | None
) -> list[CategoryResult]:
    """Each category of the policy: its judges' scores before (``row``) and after, flagged or
    not, or not covered (no guard judges it). Empty for a single guard."""
    if panel.policy is None:
        return []
    results = []
    for category in panel.categories:
        judges = [judge for judge in bound if judge.category == category.id]
        entries = []
        for judge in judges:
            entry: dict[str, Any] = {
                "guard": judge.guard.name,
                "category": judge.guard_category,
                "threshold": judge.threshold,
                "score_before": round(float(judge.score(row)[0]), 6),
                "flagged_before": bool(judge.flags(row)[0]),
            }
            if after is not None:
                entry["score_after"] = round(float(judge.score(after)[0]), 6)
                entry["flagged_after"] = bool(judge.flags(after)[0])
            entries.append(entry)
        lead = max(entries, key=lambda e: e["score_before"] / e["threshold"], default=None)
        results.append(
            CategoryResult(
                id=category.id,
                name=category.name,
                covered=bool(entries),
                flagged=any(e["flagged_before"] for e in entries),
                guard=lead["guard"] if lead else None,
                score_before=max((e["score_before"] for e in entries), default=None),
                score_after=max((e["score_after"] for e in entries), default=None)
                if after is not None
                else None,
                flagged_after=any(e["flagged_after"] for e in entries)
                if after is not None and entries
                else None,
                judges=entries,
            )
        )
    return results


def _build_report(
    options: SafeguardOptions,
    panel: GuardPanel,
    scored: Scored,
    fmt: str,
    outcome: Outcome,
    segmented: Segmented | None,
    verified: Verified | None,
    timings: dict[str, float],
) -> Report:
    """The Report of :meth:`Pipeline.safeguard`, from the results of its stages."""
    searched: dict[str, Any] = {}
    if segmented is not None and verified is not None:
        first = verified.searched
        searched = dict(
            working_size=segmented.size,
            n_regions=int(segmented.labels.max()) + 1,
            attribution_map=segmented.attribution,
            labels=segmented.labels,
            search_flipped=first.flipped,
            depth=first.depth,
            search_stages=[dict(stage) for stage in [*first.stages, *verified.stages]],
            obfuscated_fraction_unpruned=verified.unpruned_fraction,
            forward_passes=_forward_passes(
                len(panel.guards),
                len({id(judge.guard) for judge in scored.flagged_judges}),
                segmented,
                verified,
            ),
        )
    attribution = options.attribution
    warnings = list(outcome.warnings)
    protected = None
    if segmented is not None and segmented.protection is not None:
        protected = protected_report(segmented.protection, outcome.mask)
        if protected["obfuscated"]:
            hidden = [d for d in protected["detections"] if d["obfuscated"]]
            warnings.append(
                f"{len(hidden)} protected region(s) ({', '.join(protected['detectors'])}) had to "
                f"be obfuscated for the flip: {100 * protected['fraction_hidden']:.0f}% of the "
                "protected area is hidden"
            )
    return Report(
        input=_input_info(scored.loaded),
        guard=_guard_info(scored.model, scored.target, scored.lead.threshold),
        policy=panel.policy.name if panel.policy is not None else None,
        categories=_category_results(panel, scored.judges, scored.row, outcome.row_after),
        flagged=scored.flagged,
        scores_before=scored.scores_before,
        scores_after=outcome.scores_after,
        success=outcome.success,
        regions=outcome.regions,
        obfuscated_fraction=outcome.obfuscated_fraction,
        style=options.style,
        fallback=outcome.fallback,
        attribution=attribution if isinstance(attribution, str) else attribution.name,
        segmenter=options.segmenter,
        segmenter_options=dict(options.segmenter_options),
        search=options.search,
        pruned=options.prune,
        timings=timings,
        error=outcome.error,
        warnings=warnings,
        protected=protected,
        image=outcome.image,
        mask=outcome.mask,
        encoded=outcome.encoded,
        output_format=fmt,
        **searched,
    )


def _forward_passes(
    guards: int, searching: int, segmented: Segmented, verified: Verified
) -> dict[str, int]:
    """Forward passes for one input: each image scored counts once per guard that scored it
    (the search's candidates: the ``searching`` guards that flagged; the rest: every guard);
    one attribution pass per flagged judge; ``gradient`` (when the search took region
    gradients) counts forward-and-backward passes."""
    passes = {
        "classify": guards,
        "attribution": segmented.attributions,
        "search": verified.search_passes * searching,
        "verify": verified.verify_passes * guards,
    }
    if verified.gradient_passes:
        # Region gradients: a forward and a backward pass of each flagged guard per step.
        passes["gradient"] = verified.gradient_passes * searching
    passes["total"] = sum(passes.values())
    return passes


def carve(labels: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """``labels`` with each mask made one region (later masks over earlier ones), renumbered
    0..K-1."""
    carved = labels.astype(np.int64)
    next_id = int(carved.max()) + 1
    for mask in masks:
        carved[mask] = next_id
        next_id += 1
    _, compact = np.unique(carved, return_inverse=True)
    return compact.reshape(labels.shape).astype(labels.dtype)


def _region_gradient(
    judges: list[BoundJudge],
    render: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    working: np.ndarray,
    deltas: Callable[[int], GuardDeltas | None] | None = None,
) -> RegionGradient | None:
    """Region gradients over the flagged judges, when every one of them is differentiable (a
    detector-backed guard, which brings its own attribution, is not): else ``None``.
    ``deltas(i)``: judge ``i``'s region deltas on the output, where there are some."""
    if any(getattr(judge.guard, "own_attribution", None) is not None for judge in judges):
        return None
    from safeview.guards.base import module_lock

    gradient_judges = [
        GradientJudge(
            module=judge.guard.module,
            preprocess=judge.guard.preprocess,
            probabilities=judge.guard.probabilities,
            target=judge.target,
            decision=judge.guard.decision,
            threshold=judge.threshold,
        )
        for judge in judges
    ]
    return region_gradient(
        gradient_judges, render, labels, working, lock=module_lock, deltas=deltas
    )


class _Proxy:
    """The image at the output's resolution (or at most ``OUTPUT_PROXY_SIDE`` long) and its
    fine regions there, made on first use: ``render(chosen)`` hides the regions ``chosen``;
    ``coded_render(chosen)`` approximates that output once encoded in ``fmt`` and decoded (see
    :meth:`coded_render`)."""

    def __init__(
        self,
        pixels: np.ndarray,
        labels: np.ndarray,
        renderer: Any,
        height: int,
        width: int,
        fmt: str,
    ) -> None:
        self._pixels, self._labels, self._renderer = pixels, labels, renderer
        self.height, self.width, self.fmt = height, width, fmt
        self._made: tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]] | None = None
        self._coded: tuple[np.ndarray, np.ndarray] | None = None

    def _make(self) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        if self._made is None:
            image = resize(self._pixels, (self.width, self.height))
            labels = resize(self._labels, (self.width, self.height), nearest=True)
            self._made = (image, labels, bind(self._renderer, image))
        return self._made

    @property
    def image(self) -> np.ndarray:
        return self._make()[0]

    @property
    def regions(self) -> int:
        return int(self._labels.max()) + 1

    def _mask(self, chosen: list[int]) -> np.ndarray:
        lookup = np.zeros(self.regions, dtype=bool)
        lookup[list(chosen)] = True
        return lookup[self._make()[1]]

    def render(self, chosen: list[int]) -> np.ndarray:
        return self._make()[2](self._mask(chosen))

    @property
    def coded_image(self) -> np.ndarray:
        """The image encoded in ``fmt`` and decoded (a layered renderer only)."""
        if self._coded is None:
            image = self.image
            layer = np.broadcast_to(self._renderer.layer(image), image.shape)
            self._coded = tuple(  # type: ignore[assignment]
                decode_pixels(encode_image(np.ascontiguousarray(x), self.fmt, optimize=False))
                for x in (image, layer)
            )
        assert self._coded is not None
        return self._coded[0]

    def coded_render(self, chosen: list[int]) -> np.ndarray:
        """The encoded image where it is kept and the encoded layer where ``chosen`` is hidden.
        A JPEG codes each 8x8 block (16x16 with its colour) on its own, so this is close to the
        encoded output: it differs in the blocks a region's edge crosses, and where the decoder
        smooths colour across blocks; a lossless format is exact. It lets the search see what
        encoding does to a flip."""
        image = self.coded_image
        assert self._coded is not None
        return composite(image, self._coded[1], self._mask(chosen))


class _OutputDeltas:
    """The flagged guards' region deltas on the output (``proxy``), made on first use: ``get()``
    maps each of the ``active`` guards to its deltas, or is ``None`` when the style is not a
    layer or a guard's preprocessing fails the linearity check (candidates are then rendered)."""

    def __init__(
        self,
        panel: GuardPanel,
        active: set[int],
        judges: list[BoundJudge],
        renderer: Any,
        proxy: _Proxy,
    ) -> None:
        self._panel, self._active, self._judges, self._proxy = panel, active, judges, proxy
        self._usable = is_layered(renderer) and not any(
            getattr(judge.guard, "own_attribution", None) is not None for judge in judges
        )
        self._made: dict[int, GuardDeltas] | None = None

    def get(self) -> dict[int, GuardDeltas] | None:
        if self._usable and self._made is None:
            made: dict[int, GuardDeltas] = {}
            for index in sorted(self._active):
                guard = self._panel.guards[index]
                proxy = self._proxy
                one = guard_deltas(
                    guard.preprocess, proxy.coded_image, proxy.coded_render, proxy.regions
                )
                if one is None:
                    self._usable = False
                    return None
                made[index] = one
            self._made = made
        return self._made if self._usable else None

    def inputs(self, sets: list[list[int]]) -> dict[int, torch.Tensor] | None:
        """Each active guard's inputs for ``sets``, or ``None`` (render them instead)."""
        made = self.get()
        if made is None:
            return None
        inputs = {}
        for index, one in made.items():
            composed = one.sets(sets)
            if composed is None:
                self._usable = False
                return None
            inputs[index] = composed
        return inputs

    def for_judge(self, position: int) -> GuardDeltas | None:
        """Deltas for flagged judge ``position`` (its guard's)."""
        made = self.get()
        if made is None:
            return None
        return made.get(self._panel.index_of(self._judges[position].guard))


def _accepts(function: Any, keyword: str, *, by_name: bool = False) -> bool:
    """Whether ``function`` takes ``keyword`` (by name, or through ``**options`` unless
    ``by_name``; a ``functools.partial`` is looked through)."""
    import functools
    import inspect

    if by_name:
        while isinstance(function, functools.partial):
            function = function.func

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == keyword or (not by_name and p.kind is inspect.Parameter.VAR_KEYWORD)
        for p in parameters
    )


def _failure_message(options: SafeguardOptions, flipped: bool) -> str:
    if flipped:
        return "the search flipped the decision but the full-resolution output did not"
    if options.search == "greedy":
        return f"no flip within {options.max_regions} regions"
    return f"the {options.search} search found no flip"


def _full_mask(labels: np.ndarray, chosen: list[int], height: int, width: int) -> np.ndarray:
    small = np.isin(labels, chosen).astype(np.uint8)
    return resize(small, (width, height), nearest=True).astype(bool)


def _regions(result: Counterfactual, labels: np.ndarray, loaded: LoadedImage) -> list[Region]:
    """The chosen regions of ``result`` in original-image coordinates, by rank."""
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
    return sorted(regions, key=lambda r: r.rank)


def _apply_failure_policy(
    on_failure: str, verified: Verified, labels: np.ndarray, loaded: LoadedImage, fmt: str
) -> Outcome:
    """The output when no flip held: ``"blur-all"`` blurs the whole image, ``"keep"`` keeps the
    search's attempt, ``"error"`` has none."""
    if on_failure == "blur-all":
        everything = np.ones(loaded.pixels.shape[:2], dtype=bool)
        image = Blur().render(loaded.pixels, everything)
        return Outcome(
            success=False,
            image=image,
            mask=everything,
            encoded=encode_image(image, fmt),
            obfuscated_fraction=1.0,
            fallback=on_failure,
            warnings=[
                *verified.warnings,
                "search failed: the whole image was blurred (fail-closed)",
            ],
        )
    if on_failure == "keep":
        return Outcome(
            success=False,
            image=verified.image,
            mask=verified.mask,
            encoded=verified.encoded,
            obfuscated_fraction=round(float(verified.mask.mean()), 6),
            regions=_regions(verified.counterfactual, labels, loaded),
            fallback=on_failure,
            warnings=[
                *verified.warnings,
                "search failed: the attempted regions were kept; may be unsafe",
            ],
        )
    return Outcome(
        success=False, image=None, mask=None, encoded=None, fallback=on_failure,
        warnings=list(verified.warnings),
    )  # fmt: skip
