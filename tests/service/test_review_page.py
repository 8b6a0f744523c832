"""The review page end to end in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import red_square_image
from tests.service.conftest import policy_settings, serving, write_service_policy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.mark.slow
def test_upload_shows_obfuscated_first_and_original_only_on_reveal(
    live_server: str,
    tmp_path: Path,
) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run setup.sh"

    image_path = tmp_path / "unsafe.png"
    Image.fromarray(red_square_image()).save(image_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
        )
        page = browser.new_page()
        page.goto(live_server + "/")
        page.wait_for_selector("#guard option[value='red-square']", state="attached")
        page.set_input_files("#file", str(image_path))
        page.click("#run")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert page.is_visible("#obfuscated")
        assert page.is_visible("#viz")
        assert not page.is_visible("#original")  # the original stays hidden
        assert "flipped" in page.inner_text("#summary").lower()
        # the grounded rationale (on by default) is shown
        assert "flipped the guard's decision" in page.inner_text("#rationale-text")
        assert page.eval_on_selector("#obfuscated", "img => img.naturalWidth") == 128
        page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        page.click("#reveal")
        page.wait_for_selector("#original", state="visible", timeout=10_000)
        assert page.eval_on_selector("#original", "img => img.naturalWidth") == 128
        browser.close()


@pytest.mark.slow
def test_the_policy_is_the_default_choice_and_each_category_is_listed(tmp_path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    image_path = tmp_path / "unsafe.png"
    Image.fromarray(red_square_image()).save(image_path)
    settings = policy_settings(write_service_policy(tmp_path))
    with serving(settings) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#guard option[value='house']", state="attached")
        chosen = page.eval_on_selector(
            "#guard", "s => [s.selectedOptions[0].dataset.kind, s.value]"
        )
        assert chosen == ["policy", "house"]
        assert "red-square" in page.inner_text("#guard")  # a single guard is still offered
        page.set_input_files("#file", str(image_path))
        page.click("#run")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert not page.is_visible("#original")  # the original stays hidden
        assert not page.is_visible("#scores") and page.is_visible("#categories")
        rows = page.eval_on_selector_all(
            "#categories tbody tr", "rows => rows.map(r => r.innerText.split('\\t'))"
        )
        by_name = {row[0]: row for row in rows}
        assert by_name["sexually explicit"][1] == "flagged, cleared"
        assert by_name["violence and gore"][1] == "flagged, cleared"
        assert by_name["self-harm"][1:] == ["not covered", "-", "-"]
        assert "sexually explicit, violence and gore" in page.inner_text("#summary")
        page.screenshot(path=str(tmp_path / "review-policy.png"), full_page=True)
        browser.close()


def wait_until_playable(page: Any, selector: str, timeout_s: float = 10.0) -> None:
    """Polls from Python: the page's CSP forbids the eval that Playwright's wait_for_function uses
    when the condition is not true at once (a slow machine), and it must keep forbidding it."""
    deadline = time.monotonic() + timeout_s
    while page.eval_on_selector(selector, "v => v.readyState") < 1:
        assert time.monotonic() < deadline, f"{selector} never loaded its metadata"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_clip_plays_obfuscated_first_and_the_original_only_on_reveal(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.video.clips import moving_square_frames, write_clip

    clip = write_clip(
        tmp_path / "unsafe.mp4", moving_square_frames(20, present=lambda i: 6 <= i < 14)
    )
    # Every blob URL the page makes, and whether it was made from the chosen file (the original).
    spy = """
      window.blobs = [];
      const make = URL.createObjectURL.bind(URL);
      URL.createObjectURL = (thing) => {
        window.blobs.push(thing instanceof File ? "original" : thing.type);
        return make(thing);
      };
    """
    with serving() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.add_init_script(spy)
        page.goto(url + "/")
        page.wait_for_selector("#guard option[value='red-square']", state="attached")
        page.set_input_files("#file", str(clip))
        page.click("#run")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert page.is_visible("#obfuscated-video") and not page.is_visible("#obfuscated")
        assert not page.is_visible("#original-video") and not page.is_visible("#viz")
        assert page.evaluate("window.blobs") == ["video/mp4"]  # the output; not the original
        assert page.get_attribute("#obfuscated-video", "src").startswith("blob:")
        assert page.get_attribute("#original-video", "src") is None
        wait_until_playable(page, "#obfuscated-video")
        assert page.eval_on_selector("#obfuscated-video", "v => v.videoWidth") == 160
        rows = page.eval_on_selector_all(
            "#spans tbody tr", "rows => rows.map(r => r.innerText.split('\\t'))"
        )
        assert len(rows) == 1 and rows[0][1] == "unsafe" and rows[0][4] == "hidden, verified"
        assert rows[0][0] == "0.24\u20130.60 s"  # the span: frames 6 to 14 at 25 fps
        assert "unsafe 0." in rows[0][2] and "unsafe 0." in rows[0][3]
        assert "frames obfuscated" in page.inner_text("#video-summary")
        assert "verified" in page.inner_text("#summary")
        page.screenshot(path=str(tmp_path / "review-video.png"), full_page=True)
        page.click("#reveal")
        page.wait_for_selector("#original-video", state="visible", timeout=10_000)
        assert page.evaluate("window.blobs") == ["video/mp4", "original"]
        wait_until_playable(page, "#original-video")
        browser.close()
