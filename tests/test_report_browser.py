"""``report.html`` in a real headless Chromium (Selenium with the system's chromedriver): the page loads without a
console message or script error, its inlined plots decode, the truncated badge and the reward colours show, a
first paragraph that lowers J is drawn in the harmful red (although its r_1 = C_1 is positive), and a screenshot of
the expected size is not blank. Hostile record fields run no script there either.

Skipped when Chromium, chromedriver or Selenium is missing, except under CI (``CI`` set, as .ci/run's machine
does), where that is a failure: Debian's packages are ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from repro_core import report
from test_report import FULL_NEGATIVE, FULL_POSITIVE, HOSTILE, make_record, scored_record

WIDTH, HEIGHT = 1000, 1500


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _browser() -> tuple[str, str]:
    """Paths of Chromium and chromedriver; skips (fails under CI) when one is missing."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    missing = "Chromium" if not browser else "chromedriver"
    if _in_ci():
        pytest.fail(f"{missing} not found: CI needs the apt packages chromium and chromium-driver")
    pytest.skip(f"{missing} not found (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by the system's chromedriver (never Selenium Manager: no download), with a
    1000 x 1500 CSS-pixel viewport at one device pixel per CSS pixel, logging every console message."""
    binary, driver_path = _browser()
    if _in_ci():
        from selenium import webdriver
    else:
        webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


def load(driver: Any, page: Path) -> list[dict[str, Any]]:
    """Open ``page`` and return the console messages and script errors logged while it loaded."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(page.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    return driver.get_log("browser")


def colors(png: bytes) -> set[tuple[int, int, int]]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return {color for _, color in image.convert("RGB").getcolors(maxcolors=1 << 24)}


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def test_the_console_check_catches_errors(browser: Any, tmp_path: Path) -> None:
    # The harness itself: a page that logs an error and throws is seen as such.
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('logged');"
                    "throw new Error('thrown')</script></body></html>", encoding="utf-8")
    messages = [entry["message"] for entry in load(browser, page) if entry["level"] == "SEVERE"]
    assert any("logged" in m for m in messages) and any("Uncaught Error: thrown" in m for m in messages), messages


def test_the_report_renders_in_a_browser(browser: Any, tmp_path: Path) -> None:
    records = [make_record(0, [0.4, -0.05, 0.1], cue="Wait"), make_record(1, [0.2, -0.3], correct=False),
               make_record(2, [0.1, 0.05, -0.02, 0.01], truncated=True, tail="tail")]
    images = [tmp_path / "j_curves.png", tmp_path / "rewards.png"]
    report.plot_j_curves(records, images[0])
    report.plot_rewards(records, images[1])
    report.write_html(records, tmp_path / "report.html", images=images, settings={"model": "hand-built"})

    assert load(browser, tmp_path / "report.html") == []
    # The inlined plots decode to their own size.
    sizes = browser.execute_script(
        "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert sizes == [[True, 1320, 495], [True, 1320, 495]]
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [WIDTH, HEIGHT]

    # The viewport's screenshot: a PNG of the viewport's size with the page on it, not a blank one.
    screenshot = browser.get_screenshot_as_png()
    from PIL import Image

    with Image.open(io.BytesIO(screenshot)) as image:
        assert image.size == (WIDTH, HEIGHT)
    assert len(colors(screenshot)) > 100

    # The truncated trace: its badge is shown, on trace 2 only.
    from selenium.webdriver.common.by import By

    badges = browser.find_elements(By.CSS_SELECTOR, "section.trace .badge")
    assert len(badges) == 1 and badges[0].is_displayed() and badges[0].text == "truncated"
    assert badges[0].find_element(By.XPATH, "./ancestor::section").get_attribute("id") == "trace-2"
    # Trace 0 as drawn: its first paragraph (r = 0.4) in the full blue, and trace 1's second (r = -0.3) in the full
    # red, on the fixed scale of +-0.25.
    section = browser.find_element(By.ID, "trace-0")
    browser.execute_script("arguments[0].scrollIntoView()", section)
    assert hex_rgb(FULL_POSITIVE) in colors(section.screenshot_as_png)
    assert hex_rgb(FULL_NEGATIVE) in colors(browser.find_element(By.ID, "trace-1").screenshot_as_png)


def test_a_first_paragraph_that_lowers_j_is_drawn_as_harmful(browser: Any, tmp_path: Path) -> None:
    # The core's own scores for J falling by 0.9 nat over the first paragraph, then rising: r_1 = C_1 > 0.
    from selenium.webdriver.common.by import By

    harmful, helpful = scored_record(0, [-3.0, -3.9, -3.2, -2.0]), scored_record(1, [-3.0, -2.4, -2.5, -2.0])
    assert harmful["reward"][1] > 0
    report.write_html([harmful, helpful], tmp_path / "report.html")
    assert load(browser, tmp_path / "report.html") == []
    from PIL import Image

    drawn = []
    for trace in ("trace-0", "trace-1"):
        first = browser.find_element(By.CSS_SELECTOR, f"#{trace} span.para")
        assert first.text == "Step 0."
        browser.execute_script("arguments[0].scrollIntoView()", first)
        # The colour the browser painted: the commonest colour inside the box of the paragraph's first line (the
        # span's own box runs on over the blank lines after it), its background behind the letters.
        box = browser.execute_script("const r = arguments[0].getClientRects()[0]; "
                                     "return [r.left, r.top, r.right, r.bottom].map(Math.round)", first)
        with Image.open(io.BytesIO(browser.get_screenshot_as_png())) as image:
            line = image.convert("RGB").crop((box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1))
            drawn.append(max(line.getcolors(maxcolors=1 << 24))[1])
    expected = [hex_rgb(report.reward_color(report.step_shades(r)[0], report.DEFAULT_COLOR_MAX))
                for r in (harmful, helpful)]
    assert drawn == expected
    (red, _, blue), (red_2, _, blue_2) = drawn
    assert red > blue and blue_2 > red_2  # harmful red, helpful blue


def test_hostile_fields_run_no_script_in_a_browser(browser: Any, tmp_path: Path) -> None:
    hostile = HOSTILE.replace("alert", "console.error")  # an injected handler or script would log an error
    records = [make_record(hostile, [0.1, -0.2], cue=hostile, text=hostile + " {i}", answer=hostile,
                           predicted=hostile, prompt=hostile, problem=hostile, sample=hostile, tail=hostile,
                           truncated=True)]
    report.write_html(records, tmp_path / "report.html", settings={hostile: hostile})
    assert load(browser, tmp_path / "report.html") == []
    assert browser.execute_script("return document.scripts.length + document.images.length") == 0
    from selenium.webdriver.common.by import By

    text = browser.find_element(By.TAG_NAME, "body").text
    assert text.count("console.error(1)") >= 5  # shown as text, not run
