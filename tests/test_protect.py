"""Keeping the context: a face stays visible when the flip does not need it, and the report says
when it did. The faces detector is a stand-in registered for the test (skin-coloured blocks), so
the known answer is where the face is.

The scene has two red squares, one of them inside the face (red paint on a cheek): the red guard
flags while more than about 3% of the image is red, and hiding either square flips it. Without
protection the search hides the one in the face (it ranks first); with it, the other one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import safeview
from safeview.detectors import DETECTORS, Detection
from safeview.options import SafeguardOptions
from safeview.report import JSON_SCHEMA, Report
from tests.conftest import red_square_image

SKIN = (224, 172, 140)


class SkinFaces:
    """Each skin-coloured block of at least 50 pixels is a "face" (never unsafe)."""

    name = "test-faces"
    version = "test"
    license = "MIT"

    def __init__(self, box: tuple[int, int, int, int] | None = None) -> None:
        self.box = box

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        if self.box is not None:
            return [Detection("face", 0.9, self.box)]
        skin = np.all(np.abs(pixels.astype(int) - SKIN) < 12, axis=-1).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(skin)
        found = []
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if area >= 50:
                found.append(Detection("face", 0.9, (x, y, x + w, y + h)))
        return found


@pytest.fixture
def test_faces() -> Iterator[None]:
    DETECTORS.register("test-faces", lambda box=None: SkinFaces(box))
    DETECTORS.register("test-face-on-red", lambda: SkinFaces((16, 28, 114, 86)))
    yield


FACE = (66, 30, 112, 84)  # x0, y0, x1, y1
OUTSIDE = (20, 40, 40, 60)  # the red square beside the face
INSIDE = (80, 53, 98, 71)  # the red square on the face: the smaller


def scene() -> np.ndarray:
    """A 20 px red square, and a skin-coloured face with eyes and an 18 px red square on it."""
    image = red_square_image(size=128, square=(40, 20, 20))
    image[30:84, 66:112] = SKIN
    image[44:48, 74:78] = image[44:48, 100:104] = (40, 30, 30)  # eyes
    image[53:71, 80:98] = (230, 20, 20)
    return image


def hidden(report: Report, box: tuple[int, int, int, int]) -> float:
    assert report.mask is not None
    x0, y0, x1, y1 = box
    return float(report.mask[y0:y1, x0:x1].mean())


OPTIONS = {"style": "fill", "working_size": 128}


def test_the_face_stays_visible_when_the_flip_does_not_need_it(red_guard, test_faces) -> None:
    plain = safeview.safeguard(scene(), guard=red_guard, **OPTIONS)
    assert plain.success and plain.protected is None  # nothing protected, nothing said
    assert hidden(plain, INSIDE) > 0.5 and hidden(plain, FACE) > 0.1  # the face's square went
    report = safeview.safeguard(scene(), guard=red_guard, protect=("test-faces",), **OPTIONS)
    assert report.flagged and report.success and report.fallback is None, report.error
    assert hidden(report, OUTSIDE) > 0.5 and hidden(report, FACE) <= 0.02
    protected = report.protected
    assert protected is not None and protected["detectors"] == ["test-faces"]
    assert protected["found"] == 1 and protected["obfuscated"] is False
    (face,) = protected["detections"]
    assert face["box"] == list(FACE) and face["fraction_hidden"] <= 0.02
    assert protected["fraction_hidden"] == pytest.approx(face["fraction_hidden"])
    assert "protect" in report.timings
    assert not [w for w in report.warnings if "protected" in w]
    # The JSON carries it, and reads back.
    data = report.to_dict()
    assert data["protected"] == protected
    assert set(JSON_SCHEMA["properties"]["protected"]["required"]) <= set(data["protected"])
    assert Report.from_dict(data).protected == protected


def test_a_face_the_flip_needs_is_obfuscated_and_the_report_says_so(red_guard, test_faces) -> None:
    report = safeview.safeguard(scene(), guard=red_guard, protect=("test-face-on-red",), **OPTIONS)
    assert report.success and report.protected is not None
    assert report.protected["obfuscated"] is True
    assert report.protected["detections"][0]["fraction_hidden"] > 0.01
    assert any(
        "protected region(s) (test-face-on-red) had to be obfuscated" in w for w in report.warnings
    )


def test_protect_goes_through_the_options_contract(test_faces) -> None:
    options = SafeguardOptions(protect=("faces",))
    assert options.protect == ("faces",) and options.to_dict()["protect"] == ["faces"]
    assert SafeguardOptions.from_mapping({"protect": "faces, test-faces"}).protect == (
        "faces",
        "test-faces",
    )
    assert SafeguardOptions.from_mapping({"protect": '["faces"]'}).protect == ("faces",)
    assert SafeguardOptions.from_mapping({"protect": ""}).protect == ()
    assert SafeguardOptions.from_mapping(options.to_dict()) == options
    assert SafeguardOptions(protect=["faces"]).protect == ("faces",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="protect: unknown detector 'eyes'"):
        SafeguardOptions(protect=("eyes",))
    with pytest.raises(ValueError, match="protect must be detector names"):
        SafeguardOptions(protect=(3,))  # type: ignore[arg-type]


def test_the_command_line_flag(tmp_path: Path, red_guard, test_faces) -> None:
    from PIL import Image

    from safeview.cli import app
    from safeview.guards import register_guard

    register_guard("test-red-protect", lambda device: red_guard)
    original = DETECTORS.factory("faces")
    DETECTORS.register("faces", lambda **options: SkinFaces())
    try:
        path = tmp_path / "scene.png"
        Image.fromarray(scene()).save(path)
        arguments = ["safeguard", str(path), "--guard", "test-red-protect", "--style", "fill"]
        result = CliRunner().invoke(
            app, [*arguments, "--protect-faces", "--json", "-o", str(tmp_path / "out")]
        )
    finally:
        DETECTORS.register("faces", original)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["protected"]["detectors"] == ["faces"] and report["protected"]["found"] == 1
    assert report["protected"]["obfuscated"] is False


def test_the_service_field() -> None:
    from safeview.service.errors import ServiceError
    from safeview.service.options import option_schemas, request_options
    from safeview.service.settings import Settings

    settings = Settings(device="cpu", guard="open-nsfw")
    options, _ = request_options({"protect": "faces"}, settings)
    assert options.protect == ("faces",)
    assert option_schemas(settings)["protect"]["enum"] == ["faces"]
    with pytest.raises(ServiceError, match="protect: 'text' is not offered here"):
        request_options({"protect": "text"}, settings)


@pytest.mark.slow
def test_the_astronauts_face_stays_visible_with_the_real_detector() -> None:
    """scikit-image's astronaut photograph, the ImageNet guard's top-1 class (bobsled, p 0.21):
    MediaPipe finds Eileen Collins' face, and the flip leaves it visible."""
    from skimage import data

    report = safeview.safeguard(data.astronaut(), guard="imagenet", protect=("faces",))
    assert report.flagged and report.success and report.fallback is None, report.error
    protected = report.protected
    assert protected is not None and protected["found"] == 1
    (face,) = protected["detections"]
    x0, y0, x1, y1 = face["box"]  # about x 175-275, y 70-180
    assert 160 <= x0 <= 190 and 260 <= x1 <= 290 and 55 <= y0 <= 95 and 160 <= y1 <= 190
    assert protected["obfuscated"] is False and face["fraction_hidden"] <= 0.02
    assert hidden(report, (x0, y0, x1, y1)) <= 0.02
