"""The detectors with their real models (inside the mediapipe, rapidocr-onnxruntime and nudenet
wheels; nothing is downloaded), on BSDS500 photographs, text drawn on them, and scikit-image's
astronaut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeview.detectors import Detection, Detector, make_detector
from tests.detectors.drawn_text import draw_text, installed_fonts

pytestmark = pytest.mark.slow

BSDS = Path(__file__).resolve().parents[3] / "shared" / "data" / "bsds500" / "images" / "test"
#: BSDS500 test photographs with hands in them, and how many hands each shows at least.
HANDS = {"189006": 1, "23050": 2, "146074": 2}
ABUSIVE = ("YOU ARE A LOSER", "KILL YOURSELF", "SHUT UP IDIOT", "YOU ARE UGLY", "GO DIE")
NEUTRAL = ("HAVE A NICE DAY", "FIRST CLASS SEATS", "CLOSER TO NATURE", "BASS GUITAR LESSONS")


def photograph(name: str) -> np.ndarray:
    path = BSDS / f"{name}.jpg"
    if not path.is_file():
        pytest.skip(f"BSDS500 is not in {BSDS}")
    return np.asarray(Image.open(path).convert("RGB"))


def all_photographs() -> list[Path]:
    paths = sorted(BSDS.glob("*.jpg"))
    if len(paths) != 200:
        pytest.skip(f"BSDS500's 200 test photographs are not in {BSDS}")
    return paths


@pytest.fixture(scope="module")
def hands() -> Detector:
    return make_detector("hands", threads=1)


@pytest.fixture(scope="module")
def text() -> Detector:
    return make_detector("text", threads=1)


def _inside(found: Detection, pixels: np.ndarray) -> bool:
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = found.box
    return 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


@pytest.mark.parametrize(("name", "count"), sorted(HANDS.items()))
def test_hands_found_on_photographs(hands: Detector, name: str, count: int) -> None:
    pixels = photograph(name)
    found = hands.detect(pixels)
    assert [d.label for d in found].count("hand") >= count
    for hand in found:
        assert hand.label == "hand" and not hand.unsafe  # no gesture on these
        assert hand.points is not None and len(hand.points) == 21
        assert _inside(hand, pixels) and 0.5 <= hand.score <= 1.0
        assert hand.details["handedness"] in ("left", "right")
        x0, y0, x1, y1 = hand.box
        inside = [x0 <= x <= x1 and y0 <= y <= y1 for x, y in hand.points]
        assert sum(inside) >= 19  # the box is the landmarks' (a few may lie off the image)


def test_gesture_rule_never_fires_on_bsds500(hands: Detector) -> None:
    with_hands = 0
    for path in all_photographs()[::2]:
        found = hands.detect(np.asarray(Image.open(path).convert("RGB")))
        assert not [d for d in found if d.label == "middle_finger"], path.name
        with_hands += any(d.label == "hand" for d in found)
    assert with_hands >= 6


def test_identity_and_thread_options() -> None:
    for name in ("hands", "faces", "text", "nudenet"):
        detector = make_detector(name, threads=1)
        assert isinstance(detector, Detector) and detector.name == name
        assert detector.version and detector.license
    assert make_detector("faces", model="short").version.endswith("(short range)")
    with pytest.raises(ValueError, match="model must be one of"):
        make_detector("faces", model="far")
    with pytest.raises(ValueError, match="complexity must be 0"):
        make_detector("hands", complexity=2)


@pytest.mark.parametrize("model", ["full", "short"])
def test_faces_on_the_astronaut(model: str) -> None:
    from skimage import data

    pixels = data.astronaut()
    (face,) = make_detector("faces", model=model, threads=1).detect(pixels)
    assert face.label == "face" and not face.unsafe and face.score > 0.8
    x0, y0, x1, y1 = face.box  # Eileen Collins' face: about x 175-275, y 70-180
    assert 160 <= x0 <= 190 and 260 <= x1 <= 290 and 60 <= y0 <= 95 and 165 <= y1 <= 190
    assert face.points is not None and len(face.points) == 6
    assert face.details["keypoints"][:2] == ["right_eye", "left_eye"]


def test_ocr_reads_drawn_text_and_the_lexicon_flags_only_abuse(text: Detector) -> None:
    fonts = installed_fonts()
    if not fonts:
        pytest.skip("no DejaVu or Liberation fonts (apt-get install fonts-dejavu-core)")
    names = ("100007", "23050", "388067")
    placements = (((0.05, 0.08), 22), ((0.25, 0.45), 30), ((0.1, 0.85), 40))
    for i, phrase in enumerate(ABUSIVE + NEUTRAL):
        at, size = placements[i % 3]
        pixels, box = draw_text(
            photograph(names[i % 3]),
            phrase,
            font=fonts[i % len(fonts)],
            size=size,
            at=at,
            outline=(0, 0, 0) if i % 2 else None,
        )
        found = text.detect(pixels)
        unsafe = [d for d in found if d.unsafe]
        if phrase in ABUSIVE:
            assert unsafe, (phrase, [d.text for d in found])
            line = unsafe[0]
            assert line.label == "text" and line.details["matched"] and line.score > 0.8
            # The flagged line is where the phrase was drawn (OCR may split it in two lines).
            x0, y0, x1, y1 = line.box
            overlap = max(0, min(x1, box[2]) - max(x0, box[0])) * max(
                0, min(y1, box[3]) - max(y0, box[1])
            )
            assert overlap >= 0.7 * (x1 - x0) * (y1 - y0), (line.box, box)
        else:
            assert not unsafe, (phrase, [(d.text, d.details) for d in unsafe])
            assert any(d.text is not None and len(d.text) >= 8 for d in found), phrase


def test_ocr_on_a_plain_photograph_flags_nothing(text: Detector) -> None:
    assert not [d for d in text.detect(photograph("189006")) if d.unsafe]


def test_text_detector_takes_a_user_lexicon(tmp_path: Path) -> None:
    fonts = installed_fonts()
    if not fonts:
        pytest.skip("no DejaVu or Liberation fonts (apt-get install fonts-dejavu-core)")
    lexicon = tmp_path / "lexicon.json"
    lexicon.write_text('{"categories": {"spam": ["buy now"]}}')
    detector = make_detector("text", lexicon=str(lexicon), threads=1)
    pixels, _ = draw_text(photograph("100007"), "BUY NOW", font=fonts[0], size=36)
    (line,) = [d for d in detector.detect(pixels) if d.unsafe]
    assert line.details == {"matched": ["buy now"], "categories": ["spam"]}


def test_nudenet_finds_nothing_unsafe_on_bsds500() -> None:
    detector = make_detector("nudenet", threads=1)
    labels = set()
    for path in all_photographs()[::4]:
        found = detector.detect(np.asarray(Image.open(path).convert("RGB")))
        assert not [d for d in found if d.unsafe], (path.name, [d.to_dict() for d in found])
        labels |= {d.label for d in found}
    assert labels & {"FACE_FEMALE", "FACE_MALE"}  # it does see people


def test_grounded_backend_with_the_real_nudenet() -> None:
    from safeview.rationale.grounded import GroundedBackend
    from tests.rationale.conftest import context_for

    backend = GroundedBackend()
    assert backend.detector() is not None and backend.detector().name == "nudenet"
    rationale = backend.explain(context_for(photograph("146074"), 0.2))
    assert "found no exposed intimate body parts" in rationale.text
    keys = {"label", "score", "box", "position", "unsafe"}
    assert all(keys <= set(item) for item in rationale.evidence)


def test_mediapipe_graph_rejects_unknown_nodes() -> None:
    from safeview.detectors.mediapipe_graph import MediaPipeGraph

    graph = "mediapipe/modules/face_detection/face_detection_short_range_cpu.binarypb"
    node = "facedetectionshortrange__facedetection__TensorsToDetectionsCalculator"
    with pytest.raises(ValueError, match="no such nodes"):
        MediaPipeGraph(graph, outputs=["detections"], options={"nowhere.min_score_thresh": 0.5})
    with pytest.raises(ValueError, match="at least one calculator option"):
        MediaPipeGraph(graph, outputs=["detections"], options={})
    faces = MediaPipeGraph(
        graph,
        outputs=["detections"],
        options={f"{node}.min_score_thresh": 0.5},
    )
    with pytest.raises(ValueError, match="RGB uint8"):
        faces.process(np.zeros((10, 10), np.uint8))
    faces.close()
