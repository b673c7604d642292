"""The chat page of `r1v serve` in a real headless Chromium (Debian's, driven by Playwright): upload
an image, ask, see the reasoning folded apart from the answer, ask again (multi-turn), turn
thinking off; the screenshot must show the uploaded picture."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from r1v.chat import Chat
from r1v.serve.app import build_app, running
from r1v.serve.config import ServeConfig
from r1v.serve.engines import HFEngine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; "
                                                        ".ci/run installs it)")
# No outside requests from the browser: this machine's network is closed (and the page needs none).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RED = (215, 25, 40)


@pytest.fixture(scope="module")
def page_url(tiny):
    cfg = ServeConfig(max_tokens=64)
    engine = HFEngine(Chat(*tiny, max_tiles=2), cfg)
    with running(build_app(engine, cfg, "tiny-r1v")) as url:
        yield url
    engine.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_upload_ask_and_see_reasoning_and_answer(page_url, browser, tmp_path):
    picture = tmp_path / "red.png"
    Image.new("RGB", (160, 120), RED).save(picture)
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    errors, sent = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None)
    page.goto(page_url + "/")
    page.wait_for_function("document.getElementById('model').textContent === 'tiny-r1v'")
    page.fill("#budget", "4")
    page.fill("#max-tokens", "12")
    page.fill("#temperature", "0")  # greedy: the token counts below must not depend on a draw
    page.set_input_files("#file", str(picture))
    page.wait_for_selector("#pending img")
    page.fill("#prompt", "How many red shapes?")
    page.click("#send")
    page.wait_for_function("document.querySelector('.msg.assistant .meta').textContent.includes('reasoning')")

    first = page.locator(".msg.assistant").nth(0)
    assert first.locator(".meta").inner_text().startswith("4 reasoning + 8 answer tokens")
    assert first.locator("details.reasoning").get_attribute("open") is None  # folded
    assert len(first.locator(".reasoning-text").text_content()) > 0
    assert first.locator(".answer").text_content().strip()
    assert page.locator(".msg.user img").count() == 1

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    red = np.all(np.abs(pixels.astype(int) - RED) <= 3, axis=1).sum()
    assert red > 50 * 50, f"the uploaded picture is not on the page ({red} red pixels)"

    # A second turn carries the first; thinking off gives an answer with no reasoning shown.
    page.uncheck("#thinking")
    page.fill("#prompt", "And blue ones?")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.msg.assistant .meta')[1]?.textContent.includes('answer')")
    second = page.locator(".msg.assistant").nth(1)
    assert second.locator(".meta").inner_text().startswith("0 reasoning + 12 answer tokens")
    assert not second.locator("details.reasoning").is_visible()
    assert page.locator(".msg").count() == 4 and not errors
    assert [m["role"] for m in sent[1]["messages"]] == ["user", "assistant", "user"]
    assert sent[1]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert sent[1]["chat_template_kwargs"] == {"enable_thinking": False} and sent[0]["max_reasoning_tokens"] == 4
    page.close()


def test_the_page_asks_for_a_key_when_the_server_wants_one(tiny, browser):
    cfg = ServeConfig(api_key="sk-page")
    engine = HFEngine(Chat(*tiny, max_tiles=1), cfg)
    with running(build_app(engine, cfg, "keyed")) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#key-box", state="visible")
        page.fill("#key", "sk-page")
        page.dispatch_event("#key", "change")
        page.wait_for_function("document.getElementById('model').textContent === 'keyed'")
        page.close()
    engine.close()
