"""The Space in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

Chromium comes from the system (`.ci/run` installs Debian's `chromium`); the test skips without it, and fails
instead under HFR_HF_REQUIRE_ASSETS=1, as in CI. A screenshot of the page goes to pytest's tmp dir, and to
`$HFR_HF_SCREENSHOT_DIR/space_screenshot.png` when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

# Without the background-networking flags Chromium keeps calling Google services, which a closed network stalls.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
THERMAL_EYES = [(75, 95), (123, 95)]  # PUJ-T360 faces are registered: the same pixels in every image
TIMEOUT_MS = 60_000


def _require(condition: bool, message: str) -> None:
    if condition:
        return
    if os.environ.get("HFR_HF_REQUIRE_ASSETS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")  # session scope: checked before the (session-scoped) Space is started
def browser():
    chromium = os.environ.get("HFR_HF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    _require(chromium is not None, "Chromium not found (apt-get install chromium, or set HFR_HF_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, space_url):
    """A fresh page on the Space, recording every request that leaves 127.0.0.1."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.outside = []
    page.on(
        "request",
        lambda request: (
            page.outside.append(request.url)
            if urlparse(request.url).hostname not in ("127.0.0.1", None) and not request.url.startswith("data:")
            else None
        ),
    )
    page.goto(space_url)
    page.locator("#verify-button").wait_for()
    yield page
    page.close()


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("HFR_HF_SCREENSHOT_DIR"):
        folder = Path(os.environ["HFR_HF_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
    return path


def _upload(page, elem_id: str, path: Path) -> None:
    """Upload into an image box and wait until the app has shown it back as a PNG."""
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        f"() => {{ const img = document.querySelector('#{elem_id} img');"
        " return img && img.complete && img.naturalWidth > 0 && img.src.includes('.png'); }"
    )


def _result(page) -> tuple[float, str]:
    """Wait for a verification to finish; the score box and the decision text."""
    page.wait_for_function("() => /threshold/.test(document.querySelector('#decision').innerText)")
    return float(page.locator("#score input").input_value()), page.locator("#decision").inner_text()


def _click_pixel(page, elem_id: str, x: float, y: float) -> None:
    """Click image pixel (x, y) of the displayed image (scaled and centred in its box, as gradio lays it out)."""
    image = page.locator(f"#{elem_id} img").first
    natural_w, natural_h = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    box = image.bounding_box()
    ratio = min(box["width"] / natural_w, box["height"] / natural_h, 1.0)
    left = (box["width"] - natural_w * ratio) / 2
    top = (box["height"] - natural_h * ratio) / 2
    image.click(position={"x": left + (x + 0.5) * ratio, "y": top + (y + 0.5) * ratio})


def test_page_verifies_two_uploaded_photos(page, assets, space_url, tmp_path):
    from gradio_client import Client, handle_file

    photos = assets / "faces/deepface"
    _upload(page, "reference", photos / "img1.jpg")
    _upload(page, "probe", photos / "img2.jpg")
    page.locator("#verify-button").click()
    score, decision = _result(page)
    _screenshot(page, tmp_path, "space_screenshot.png")

    expected = Client(space_url, verbose=False).predict(
        handle_file(str(photos / "img1.jpg")),
        handle_file(str(photos / "img2.jpg")),
        "vis",
        "1e-2",
        "",
        "",
        api_name="/verify",
    )[2]
    assert score == pytest.approx(expected, abs=2e-4)  # the page shows what the app computes for these files
    assert decision.startswith("Same person") and f"{score:.4f}" in decision
    assert page.outside == []  # offline: fonts, scripts and analytics all come from the app


def test_page_aligns_a_thermal_probe_from_clicked_eyes(page, assets, tmp_path):
    thermal = assets / "thermal/puj_t360"
    _upload(page, "reference", thermal / "GalleryPristine/S01_011adsgreg.tiff")
    _upload(page, "probe", thermal / "ProbePristine/S01_012adsgreg.tiff")
    page.get_by_label("thermal").first.check()
    page.locator("#verify-button").click()
    page.get_by_text(re.compile(r"No face was found in the reference and probe images")).first.wait_for()

    page.locator("#reference-points textarea").fill("; ".join(f"{x}, {y}" for x, y in THERMAL_EYES))
    for x, y in THERMAL_EYES:
        _click_pixel(page, "probe", x, y)
        page.wait_for_function(
            "([x]) => document.querySelector('#probe-points textarea').value.includes(`${x}, `)", arg=[x]
        )
    clicked = [float(v) for v in re.findall(r"\d+", page.locator("#probe-points textarea").input_value())]
    assert clicked == pytest.approx([v for point in THERMAL_EYES for v in point], abs=2)

    page.locator("#verify-button").click()
    score, decision = _result(page)
    _screenshot(page, tmp_path, "space_thermal_screenshot.png")
    assert "probe two eye centres" in decision and "thermal probe" in decision
    assert score > 0.5  # the same person; the frozen model scores these registered thermal pairs about 0.8
    assert page.outside == []
