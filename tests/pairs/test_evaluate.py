"""`pairs eval`: pair accuracy for guards and for a VLM behind an OpenAI-compatible stub server."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from safeview.pairs import GuardJudge, VLMJudge, evaluate_pairs, make_editor, make_pairs
from tests.conftest import RedGuard


@pytest.fixture
def pairs_dir(unsafe_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pairs"
    summary = make_pairs(unsafe_dir, out, "red", make_editor("obfuscate", style="fill"), RedGuard())
    assert summary["kept"] >= 4
    return out


class AlwaysUnsafe(RedGuard):
    name = "always-unsafe"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.zeros_like(logits)
        probs[:, 1] = 1.0
        return probs


def test_guard_judge_pair_accuracy(pairs_dir: Path) -> None:
    result = evaluate_pairs(pairs_dir, GuardJudge(RedGuard()))
    assert result["pair_accuracy"] == 1.0 and result["wrong"] == []
    assert result["per_category"]["red"]["pairs"] == result["pairs"]
    blind = evaluate_pairs(pairs_dir, GuardJudge(AlwaysUnsafe()))
    assert blind["pair_accuracy"] == 0.0 and blind["image_accuracy"] == 0.5
    assert blind["unsafe_recall"] == 1.0 and blind["safe_specificity"] == 0.0
    assert len(blind["wrong"]) == blind["pairs"]
    assert blind["wrong"][0]["safe_image_called"] == "unsafe"


def test_generic_classifier_is_refused() -> None:
    guard = RedGuard()
    guard.decision = "top1"
    guard.unsafe_category = None
    with pytest.raises(ValueError, match="not a safety guard"):
        GuardJudge(guard)


def test_no_kept_pairs(tmp_path: Path) -> None:
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"status": "rejected"}) + "\n")
    with pytest.raises(ValueError, match="no kept pairs"):
        evaluate_pairs(tmp_path, GuardJudge(RedGuard()))


@pytest.fixture
def red_vlm() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible stub that rates an image unsafe when it has many red pixels."""
    requests: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            content = body["messages"][-1]["content"]
            url = next(part["image_url"]["url"] for part in content if part["type"] != "text")
            pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
            red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 90)).mean()
            reply = {"rating": "unsafe" if red > 0.03 else "safe"}
            data = json.dumps({"choices": [{"message": {"content": json.dumps(reply)}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    server.shutdown()
    server.server_close()


def test_vlm_judge_over_an_openai_compatible_server(
    pairs_dir: Path, red_vlm: tuple[str, list[dict[str, Any]]]
) -> None:
    url, requests = red_vlm
    judge = VLMJudge("openai", base_url=url, model="stub-vlm")
    result = evaluate_pairs(pairs_dir, judge)
    assert result["judge"] == "vlm:openai" and result["pair_accuracy"] == 1.0
    assert len(requests) == 2 * result["pairs"]
    prompt = requests[0]["messages"][-1]["content"][0]["text"]
    assert "Policy:" in prompt and "red" in prompt


def test_vlm_judge_reads_yes_and_no() -> None:
    judge = VLMJudge.__new__(VLMJudge)
    judge.kind, judge.name = "instructblip", "vlm:instructblip"

    class Backend:
        answer = ""

        def generate(self, pixels: Any, instruction: str) -> str:
            assert "Policy: P" in instruction
            return self.answer

    judge.backend = Backend()  # type: ignore[assignment]
    image = np.zeros((4, 4, 3), np.uint8)
    for answer, unsafe in (("Yes, it does.", True), ("no", False), ("maybe", True)):
        judge.backend.answer = answer  # type: ignore[attr-defined]
        assert judge.judge(image, {"policy": "P"}) == (unsafe, None)
