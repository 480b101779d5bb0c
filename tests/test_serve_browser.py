"""`deepmlf serve`'s page in a real browser: Selenium drives Debian's headless chromium against a real server.

Skipped (with the reason) where chromium or chromedriver is absent; `.ci/run` installs both.
Set DEEPMLF_SERVE_SCREENSHOT=docs/serve.png to write the README's screenshot of the page with its cards.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serving import Server, demo_clip, served_root

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver; .ci/run does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (the test extra)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_gpt2):
    return served_root(tmp_path_factory, tiny_gpt2)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    # --allow-missing: a given transcript has no timestamps, so timeline windows carry no words
    # (without it they fail like `deepmlf predict --segment --no-whisper`; test_serve checks that rule)
    srv = Server(trained / "runs" / "r1", tmp_path_factory.mktemp("browser") / "tmp", "--allow-missing")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,1500",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    # Both paths given: selenium-manager (which would go online for a driver) is never asked.
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, css: str, count: int = 1, timeout: float = 120):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= count)
    except TimeoutException:
        shown = driver.find_element(By.TAG_NAME, "main").text
        raise AssertionError(f"no {css!r} after {timeout} s; the page shows:\n{shown}") from None
    return driver.find_elements(By.CSS_SELECTOR, css)


def _upload(driver, path: Path, text: str = "", timeline: bool = False, window: str = "10") -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "text")
    field.clear()
    if text:
        field.send_keys(text)
    box = driver.find_element(By.ID, "segment")
    if box.is_selected() != timeline:
        box.click()
    win = driver.find_element(By.ID, "window")
    win.clear()
    win.send_keys(window)
    driver.find_element(By.ID, "pick").send_keys(str(path))  # the hidden file input behind the drop zone


def test_page_predicts_an_uploaded_clip_and_draws_its_timeline(server, browser, trained):
    from selenium.webdriver.common.by import By

    from deepmlf_cli.workflows.demo import NEW_CLIP_TEXT

    clip = demo_clip(trained)
    browser.get(server.url + "/")
    facts = _wait(browser, "#facts div", 4)
    assert _wait(browser, "#metrics .metric")  # the test metrics of results.json
    assert "r1" in facts[0].text  # the model card, from /api/model
    _upload(browser, clip, NEW_CLIP_TEXT)
    (score,) = _wait(browser, ".card .score[data-score]")
    status, body, _ = server.predict([(clip.name, clip.read_bytes())], {"text": NEW_CLIP_TEXT})
    assert status == 200
    # the page shows the API's number for the same clip and words
    assert float(score.get_attribute("data-score")) == pytest.approx(body[0]["score"], abs=1e-6)
    assert score.text.startswith(f"{body[0]['score']:+.3f}") and body[0]["polarity"] in score.text
    card = browser.find_element(By.CSS_SELECTOR, ".card")
    assert card.find_element(By.CSS_SELECTOR, ".words").text == NEW_CLIP_TEXT
    assert len(card.find_elements(By.CSS_SELECTOR, ".head")) == 3

    # a bad file's card shows its one-line error; a timeline card draws one bar per segment
    bad = server.tmp.parent / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    _upload(browser, bad)
    (err,) = _wait(browser, ".card.failed .error")
    assert err.text.startswith("broken.mp4") and "\n" not in err.text
    _upload(browser, clip, NEW_CLIP_TEXT, timeline=True, window="0.5")
    _wait(browser, ".card svg.timeline")
    rects = browser.find_elements(By.CSS_SELECTOR, ".card svg.timeline rect")
    assert len(rects) >= 3  # a 2 s clip in 0.5 s windows
    shot = os.environ.get("DEEPMLF_SERVE_SCREENSHOT")
    if shot:
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(shot)
    assert server.upload_files() == []


def test_a_script_transcript_is_shown_as_text_and_never_runs(server, browser, trained):
    from selenium.webdriver.common.by import By

    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    browser.get(server.url + "/")
    _wait(browser, "#facts div", 4)
    _upload(browser, demo_clip(trained), evil)
    _wait(browser, ".card .score[data-score]")
    card = browser.find_element(By.CSS_SELECTOR, ".card")
    assert card.find_element(By.CSS_SELECTOR, ".words").text == evil  # shown, character for character
    assert card.find_elements(By.TAG_NAME, "script") == [] and card.find_elements(By.TAG_NAME, "img") == []
    assert browser.execute_script("return window.pwned === undefined")
