"""`tui-gpt serve` in a real browser: headless Chromium opens the page, types a prefix, and looks.

Playwright drives the system's Chromium (`executable_path`: nothing is downloaded). Measured against
the hand-written DevTools client it replaces: a third of the code, 14.6 s a run against 19.5 s, 4
passes in 4. The browser's screenshot is a PNG; to check what it shows, the test also asks the app
(through the browser, with the command palette) to export its screen as SVG, whose text can be read.
Skips where Chromium, Playwright or textual-serve is missing. TUI_GPT_SCREENSHOT=FILE keeps the PNG.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from polling import wait
from served import start_serve

from tui_gpt.commands.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

PREFIX = "The fox ran"
APP_ARGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--eval-interval", "20"]
APP_ARGS += ["--dtype", "float32"]  # no --dtype auto trial (the smoke test runs the app as it comes)


def _svg_text(path: Path) -> str:
    """The screen's text in a Textual SVG screenshot, one string."""
    raw = path.read_text(encoding="utf-8")
    return html.unescape(" ".join(re.findall(r">([^<>]*)</text>", raw))).replace("\xa0", " ")


def test_serve_without_textual_serve_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "textual_serve", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)
    assert main(["serve", "--port", "8123"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'tui-gpt[serve]'" in err


def _drive(page, run_dir: Path) -> str:
    """Type the prefix in the browser, then export the screen until it shows the bars and the loss chart."""
    page.wait_for_selector(".xterm-helper-textarea", state="attached", timeout=30_000)
    page.focus(".xterm-helper-textarea")
    page.wait_for_timeout(4000)  # first paint, the trainer process, the first evaluation
    page.keyboard.press("Control+u")  # clear the starting prompt
    page.wait_for_timeout(1000)
    page.keyboard.type(PREFIX, delay=50)  # one key at a time, as a person types
    text = ""
    for _ in range(6):
        page.wait_for_timeout(3000)  # let it train: the loss chart fills, the bars follow
        before = set(run_dir.glob("*.svg"))
        page.keyboard.press("Control+p")  # the command palette
        page.wait_for_timeout(1000)
        page.keyboard.type("Export loss history", delay=50)
        page.wait_for_timeout(1000)
        page.keyboard.press("Enter")
        new = wait("the SVG export", lambda b=before: set(run_dir.glob("*.svg")) - b)
        text = _svg_text(sorted(new)[-1])
        if PREFIX in text and "%" in text and "val" in text:
            break
    return text


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_serve_in_headless_chromium(tmp_path):
    pytest.importorskip("textual_serve")
    playwright = pytest.importorskip("playwright.sync_api")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    server = start_serve(tmp_path, [*APP_ARGS, "--out", str(run_dir / "ckpt")])
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(server.url)  # the printed URL, with its token
                text = _drive(page, run_dir)
                if os.environ.get("TUI_GPT_SCREENSHOT"):  # a picture kept for a person: without the notification
                    page.wait_for_timeout(6000)  # the export's notification fades
                shot = tmp_path / "tui-gpt-serve.png"
                page.screenshot(path=str(shot))
            finally:
                browser.close()
        if os.environ.get("TUI_GPT_SCREENSHOT"):
            shutil.copy(shot, os.environ["TUI_GPT_SCREENSHOT"])
            Path(os.environ["TUI_GPT_SCREENSHOT"]).with_suffix(".txt").write_text(text, encoding="utf-8")
        assert shot.stat().st_size > 10_000  # a real picture, not a blank page
        assert PREFIX in text  # the prompt, typed in the browser
        assert re.search(r"\d+(\.\d+)?%", text)  # the next-token probabilities
        assert "val" in text and "train" in text  # the loss chart's legend
    finally:
        server.stop()
