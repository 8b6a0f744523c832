from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import safeview
from safeview.pipeline import SearchFailedError, working_shape
from safeview.report import JSON_SCHEMA
from tests.conftest import red_square_image


def test_known_answer_the_red_square_is_obfuscated(red_guard, red_square) -> None:
    report = safeview.safeguard(red_square, guard=red_guard, style="fill", working_size=128)
    assert report.search == "coarse-to-fine" and report.segmenter == "bass-guided"
    assert report.flagged
    assert report.scores_before["unsafe"] > 0.9
    assert report.success and report.search_flipped
    assert report.scores_after is not None and report.scores_after["unsafe"] < 0.5
    square = np.zeros(red_square.shape[:2], bool)
    square[40:72, 40:72] = True
    assert report.mask is not None
    # The obfuscation covers (most of) the square and little else: minimal means it may leave a
    # sliver whose red area is below what the guard fires on (3% of the image).
    assert report.mask[square].mean() > 0.85
    assert report.obfuscated_fraction <= 1.5 * square.mean()
    assert report.forward_passes["total"] == 2 + sum(
        report.forward_passes[k] for k in ("search", "verify")
    )
    assert report.obfuscated_fraction <= report.obfuscated_fraction_unpruned
    # The rest of the image is untouched; the red is gone.
    assert report.image is not None
    np.testing.assert_array_equal(report.image[~report.mask], red_square[~report.mask])
    assert ((report.image[..., 0] > 200) & (report.image[..., 1] < 60)).mean() < 0.03 * 0.5
    # Regions are reported in original coordinates and cover the square.
    x0 = min(r.bbox[0] for r in report.regions)
    y1 = max(r.bbox[3] for r in report.regions)
    assert x0 <= 42 and y1 >= 70
    for key in JSON_SCHEMA["required"]:
        assert key in report.to_dict()
    assert set(report.timings) >= {"classify", "attribution", "segmentation", "search", "total"}


@pytest.mark.parametrize("style", ["blur", "pixelate", "inpaint"])
def test_every_style_flips_a_small_square(red_guard, style: str) -> None:
    image = red_square_image(square=(50, 50, 20))
    report = safeview.safeguard(
        image,
        guard=red_guard,
        style=style,
        working_size=128,
        segmenter="slic",
        segmenter_options={"compactness": 10},
    )
    assert report.success, report.error
    assert report.style == style
    assert report.obfuscated_fraction < 0.3


def test_full_resolution_output_is_rendered_at_full_size(red_guard) -> None:
    big = np.kron(red_square_image(), np.ones((4, 4, 1), dtype=np.uint8))  # 512 x 512
    report = safeview.safeguard(
        big,
        guard=red_guard,
        style="fill",
        working_size=128,
        segmenter="slic",
        segmenter_options={"compactness": 10},
    )
    assert report.success
    assert report.image is not None and report.image.shape == big.shape
    assert report.working_size == [128, 128]
    assert report.regions[0].bbox[2] > 128  # bboxes in original pixels


def test_safe_image_is_not_obfuscated_but_reencoded(red_guard) -> None:
    safe = np.full((64, 64, 3), 120, np.uint8)
    buffer = io.BytesIO()
    image = Image.fromarray(safe)
    exif = image.getexif()
    exif[0x010F] = "CameraMaker"
    image.save(buffer, format="JPEG", exif=exif)
    report = safeview.safeguard(buffer.getvalue(), guard=red_guard)
    assert not report.flagged and report.success
    assert report.depth == 0 and report.regions == [] and report.obfuscated_fraction == 0
    assert report.encoded is not None and b"CameraMaker" not in report.encoded


def test_failure_policies(red_guard, red_square) -> None:
    # With a threshold this low nothing short of removing every red pixel everywhere flips,
    # and the budget of one region cannot do it.
    options = dict(
        guard=red_guard,
        style="fill",
        threshold=1e-9,
        search="greedy",
        max_regions=1,
        working_size=128,
    )
    blurred = safeview.safeguard(red_square, on_failure="blur-all", **options)
    assert not blurred.success and blurred.fallback == "blur-all"
    assert blurred.obfuscated_fraction == 1.0 and blurred.encoded is not None
    kept = safeview.safeguard(red_square, on_failure="keep", **options)
    assert kept.fallback == "keep" and len(kept.regions) == 1 and 0 < kept.obfuscated_fraction < 1
    with pytest.raises(SearchFailedError) as info:
        safeview.safeguard(red_square, on_failure="error", **options)
    assert info.value.report.encoded is None and info.value.report.image is None


def test_classify_returns_a_report(red_guard, red_square) -> None:
    report = safeview.classify(red_square, guard=red_guard)
    assert report.flagged and report.depth == 0 and report.scores_after is None
    assert report.guard.target == "unsafe"


def test_bad_options_are_refused_before_work(red_guard, red_square) -> None:
    with pytest.raises(ValueError, match="style"):
        safeview.safeguard(red_square, guard=red_guard, style="smudge")
    with pytest.raises(ValueError, match="threshold"):
        safeview.safeguard(red_square, guard=red_guard, threshold=1.5)
    with pytest.raises(ValueError, match="on_failure"):
        safeview.safeguard(red_square, guard=red_guard, on_failure="shrug")  # type: ignore[arg-type]
    with pytest.raises(safeview.ImageInputError):
        safeview.safeguard(b"not an image", guard=red_guard)


def test_working_shape_never_upscales() -> None:
    assert working_shape(321, 481, 224) == (224, 336)
    assert working_shape(100, 50, 224) == (100, 50)


def test_grounded_rationale_goes_into_the_report(red_guard, red_square) -> None:
    report = safeview.safeguard(
        red_square,
        guard=red_guard,
        style="fill",
        working_size=128,
        segmenter="slic",
        segmenter_options={"compactness": 10},
        rationale="grounded",
        rationale_options={"detector": None},
    )
    assert report.rationale is not None
    assert report.rationale["backend"] == "grounded"
    assert "flipped the guard's decision" in report.rationale["text"]
    assert set(report.rationale) >= {"text", "backend", "model", "prompt", "category", "answers"}
    assert "rationale" in report.timings
    assert report.to_dict()["rationale"]["text"] == report.rationale["text"]


@pytest.mark.parametrize("attribution", ["fullgrad", "gradcam"])
def test_concurrent_calls_on_one_guard_agree(red_guard, red_square, attribution: str) -> None:
    """The service runs requests in threads on one guard; attribution hooks must not mix them."""
    from concurrent.futures import ThreadPoolExecutor

    def run(_: int) -> tuple[float, int]:
        report = safeview.safeguard(
            red_square,
            guard=red_guard,
            attribution=attribution,
            style="fill",
            working_size=128,
            segmenter="slic",
            segmenter_options={"compactness": 10},
        )
        assert report.attribution_map is not None
        return round(report.obfuscated_fraction, 6), int(report.attribution_map.argmax())

    expected = run(0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(12)))
    assert results == [expected] * 12


def test_two_separated_squares_are_both_covered(red_guard) -> None:
    # Each square alone is about 2.4% of the image (under the guard's 3%); together they fire,
    # and hiding one of them is enough to flip. With three, two must go.
    image = red_square_image(size=160, square=(20, 20, 25))
    image[110:135, 110:135] = (230, 20, 20)
    image[20:45, 110:135] = (230, 20, 20)
    report = safeview.safeguard(image, guard=red_guard, working_size=160)
    assert report.flagged and report.success and report.fallback is None, report.error
    assert report.mask is not None
    squares = [(20, 20), (110, 110), (20, 110)]
    covered = [report.mask[r : r + 25, c : c + 25].mean() > 0.5 for r, c in squares]
    assert sum(covered) >= 2
    assert report.obfuscated_fraction <= 1.5 * 3 * 25 * 25 / 160**2


@settings(max_examples=12, deadline=None)
@given(
    row=st.integers(0, 96),
    col=st.integers(0, 96),
    side=st.integers(28, 36),
    style=st.sampled_from(["blur", "fill"]),
)
def test_whatever_the_default_returns_flips_the_verified_output(row, col, side, style) -> None:
    from tests.conftest import RedGuard

    guard = RedGuard()
    image = red_square_image(square=(row, col, side))
    report = safeview.safeguard(image, guard=guard, style=style, working_size=128)
    assume(report.flagged)  # the property is about flagged images
    assert report.encoded is not None
    after = safeview.classify(report.encoded, guard=guard)
    if report.success:
        assert report.fallback is None and not after.flagged
        assert report.obfuscated_fraction < 0.5
    else:  # the fallback is reported and fail-closed
        assert report.fallback == "blur-all" and report.obfuscated_fraction == 1.0


def test_a_guard_that_returns_nan_fails_closed(red_guard, red_square) -> None:
    from safeview.pipeline import GuardError

    class NaNGuard(type(red_guard)):  # type: ignore[misc]
        def probabilities(self, logits):
            return torch.full_like(logits, float("nan"))

    with pytest.raises(GuardError, match="non-finite"):
        safeview.safeguard(red_square, guard=NaNGuard())
    with pytest.raises(GuardError, match="non-finite"):
        safeview.classify(red_square, guard=NaNGuard())


def test_nan_on_search_candidates_is_never_a_flip(red_guard, red_square) -> None:
    class NaNOnCandidates(type(red_guard)):  # type: ignore[misc]
        """Sane on the input; NaN on anything obfuscated (a guard broken by blur)."""

        def probabilities(self, logits):
            probs = torch.softmax(logits, dim=-1)
            return torch.where(probs[:, 1:2] < 0.5, torch.nan, probs)

    from safeview.pipeline import GuardError

    guard = NaNOnCandidates()
    # Every candidate is "unsure", so none flips; the fail-closed fallback is re-scored, also NaN,
    # so no report with a made-up score comes out: an error, nothing written.
    with pytest.raises(GuardError):
        safeview.safeguard(red_square, guard=guard, working_size=128)


def test_thin_images_are_worked_on_at_a_bounded_size() -> None:
    height, width = working_shape(1, 5_000_000, 224)
    assert height == 1 and width <= 4 * 224
    height, width = working_shape(60_000, 3, 224)
    assert height <= 4 * 224 and width >= 1
    assert working_shape(300, 400, 224) == (224, 299)


def test_a_reused_pipeline_gives_the_reports_of_fresh_calls(red_guard) -> None:
    from safeview.pipeline import Pipeline, SafeguardOptions

    options = SafeguardOptions(guard=red_guard, working_size=128)
    images = [
        red_square_image(),
        np.full((64, 64, 3), 120, np.uint8),  # not flagged
        red_square_image(square=(96, 96, 36)),  # no flip holds: blur-all
        red_square_image(square=(10, 70, 30)),
        red_square_image(),  # again, after the others
    ]

    def comparable(report) -> dict:
        data = report.to_dict()
        data.pop("timings")
        return data

    pipeline = Pipeline(options)
    reused = [pipeline.safeguard(image, name=f"in{i}") for i, image in enumerate(images)]
    fresh = [safeview.safeguard(image, options, name=f"in{i}") for i, image in enumerate(images)]
    assert [comparable(r) for r in reused] == [comparable(r) for r in fresh]
    for one, other in zip(reused, fresh, strict=True):
        assert one.encoded == other.encoded
        np.testing.assert_array_equal(one.mask, other.mask)
    assert [r.fallback for r in reused] == [None, None, "blur-all", None, None]
    assert not reused[1].flagged and reused[0].success and reused[3].success
    first, last = comparable(reused[0]), comparable(reused[4])
    assert first.pop("input")["name"] == "in0" and last.pop("input")["name"] == "in4"
    assert first == last  # nothing of one image carries over to the next


def test_a_blur_that_changes_nothing_falls_back_to_a_fill(red_guard) -> None:
    # Blurring a single-colour image returns it unchanged: the "fail-closed" output would be the
    # original. It is filled instead, and the output no longer flags.
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[...] = (230, 20, 20)
    report = safeview.safeguard(red, guard=red_guard, working_size=64)
    assert report.flagged and not report.success and report.fallback == "blur-all"
    assert report.image is not None and not (report.image[..., 0] > 200).any()
    assert any("filled" in w for w in report.warnings)
    assert report.scores_after is not None and report.scores_after["unsafe"] < 0.5


def test_a_segmentation_with_too_many_regions_is_refused(red_guard) -> None:
    noise = np.random.default_rng(0).integers(0, 255, size=(128, 128, 3), dtype=np.uint8)
    noise[40:72, 40:72] = (230, 20, 20)
    with pytest.raises(ValueError, match="regions, more than the 2000"):
        safeview.safeguard(
            noise,
            guard=red_guard,
            working_size=128,
            segmenter="felzenszwalb",
            segmenter_options={"scale": 0, "min_size": 0},
        )


def _spy_on_verification(monkeypatch) -> dict:
    """What the pipeline hands ``search_verified``: its full-resolution renderer, verifier,
    labels and output scorer (filled in when a safeguard runs)."""
    import safeview.pipeline as pipeline

    seen: dict = {}
    real = pipeline.search_verified

    def spy(*arguments, **options):
        seen["render_full"], seen["verify"], seen["labels"] = arguments[4:7]
        seen["score_output"] = options["score_output"]
        return real(*arguments, **options)

    monkeypatch.setattr(pipeline, "search_verified", spy)
    return seen


def test_pruning_on_the_output_scores_the_output_itself_below_the_proxy_size(
    red_guard, red_square, monkeypatch, tmp_path
) -> None:
    """Up to ``OUTPUT_PROXY_SIDE``, the output that a flip which held only once grown is pruned on
    is the real output, rendered and encoded as it will be written, not an approximation."""
    import safeview.pipeline as pipeline

    seen = _spy_on_verification(monkeypatch)
    path = tmp_path / "unsafe.jpg"
    Image.fromarray(red_square).save(path, quality=95)  # the output is a JPEG too
    report = safeview.safeguard(path, guard=red_guard, segmenter="slic")
    assert report.success and max(red_square.shape) <= pipeline.OUTPUT_PROXY_SIDE
    assert report.output_format == "JPEG"
    regions = int(seen["labels"].max()) + 1
    sets = [[0], list(range(regions // 2)), list(range(1, regions))]
    on_output = seen["verify"]([seen["render_full"](chosen) for chosen in sets])
    np.testing.assert_array_equal(seen["score_output"](sets), on_output)


def test_above_the_proxy_size_pruning_scores_a_smaller_encoded_copy(red_guard, monkeypatch) -> None:
    """A large image's candidates are scored on a copy at most ``OUTPUT_PROXY_SIDE`` on a side:
    the same decisions as the real output on the red square, at a fraction of the pixels."""
    import safeview.pipeline as pipeline

    seen = _spy_on_verification(monkeypatch)
    sizes: list[tuple[int, ...]] = []
    monkeypatch.setattr(pipeline, "OUTPUT_PROXY_SIDE", 200)
    big = np.kron(red_square_image(), np.ones((4, 4, 1), dtype=np.uint8))  # 512 x 512
    report = safeview.safeguard(big, guard=red_guard, segmenter="slic", style="fill")
    assert report.success
    pipeline_object = safeview.Pipeline(guard=red_guard)
    original = type(pipeline_object.panel).score

    def measure(self, images, **options):
        sizes.extend(image.shape for image in images)
        return original(self, images, **options)

    monkeypatch.setattr(type(pipeline_object.panel), "score", measure)
    regions = int(seen["labels"].max()) + 1
    sets = [[0], list(range(regions))]
    proxy = seen["score_output"](sets)
    assert {shape[:2] for shape in sizes} == {(200, 200)}
    full = seen["verify"]([seen["render_full"](chosen) for chosen in sets])
    np.testing.assert_array_equal(proxy.argmax(axis=1), full.argmax(axis=1))


def test_search_candidates_are_composed_from_the_outputs_region_deltas(
    red_guard, red_square, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a layered style the search scores composed inputs (no candidate is rendered on the
    working copy), and what it scored for its choice is what the written PNG scores."""
    from safeview.policy import GuardPanel

    composed: list[int] = []
    real = GuardPanel.score_inputs

    def counting(self, inputs, *, fill):
        composed.append(len(next(iter(inputs.values()))))
        return real(self, inputs, fill=fill)

    monkeypatch.setattr(GuardPanel, "score_inputs", counting)
    report = safeview.safeguard(red_square, guard=red_guard)  # an array: written as PNG
    assert report.success and report.fallback is None
    assert sum(composed) == report.forward_passes["search"]
    assert not any("did not hold" in warning for warning in report.warnings)


@pytest.mark.parametrize("style", ["inpaint"])
def test_a_style_that_is_not_a_layer_renders_each_candidate(
    red_guard, red_square, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    from safeview.policy import GuardPanel

    def refuse(self, inputs, *, fill):
        raise AssertionError("an inpainted candidate depends on the whole mask: not composable")

    monkeypatch.setattr(GuardPanel, "score_inputs", refuse)
    report = safeview.safeguard(red_square, guard=red_guard, style=style)
    assert report.success


def test_the_composed_output_approximates_the_encoded_one() -> None:
    """coded_render: the encoded image kept and the encoded layer hidden is far closer to the
    real JPEG output than the unencoded render is (a JPEG codes each block on its own)."""
    from safeview.io import decode_pixels, encode_image
    from safeview.pipeline import _Proxy
    from safeview.render import Blur

    rng = np.random.default_rng(1)
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)  # busy: JPEG changes it a lot
    labels = np.kron(np.arange(12).reshape(3, 4), np.ones((32, 32), int))
    proxy = _Proxy(image, labels, Blur(), 96, 128, "JPEG")
    chosen = [1, 6, 7]
    real = decode_pixels(encode_image(proxy.render(chosen), "JPEG")).astype(float)
    plain = np.abs(proxy.render(chosen).astype(float) - real).mean()
    coded = np.abs(proxy.coded_render(chosen).astype(float) - real).mean()
    assert coded < 0.25 * plain
