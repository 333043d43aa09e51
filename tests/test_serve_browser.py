"""`tui-gpt serve` in a real browser: headless Chromium opens the page, types a prefix, and looks.

Chromium is driven over its DevTools protocol with aiohttp (textual-serve's own dependency).
The browser's screenshot is a PNG; to check what it shows, the test also asks the app (through
the browser, with the command palette) to export its screen as SVG, whose text can be read.
Skips where Chromium or textual-serve is missing. Set TUI_GPT_SCREENSHOT=FILE to keep the PNG.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from served import start_serve, wait

from tui_gpt.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

PREFIX = "The fox ran"
APP_ARGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--eval-interval", "20"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1600,1000",
]


class DevTools:
    """The few DevTools protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.n = 0

    async def call(self, method: str, **params) -> dict:
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def key(self, key: str, code: str, vk: int, text: str = "", modifiers: int = 0) -> None:
        common = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": modifiers}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **common)

    async def type(self, text: str) -> None:
        for ch in text:  # one key at a time, as a person types
            await self.call("Input.insertText", text=ch)
            await asyncio.sleep(0.05)


def _svg_text(path: Path) -> str:
    """The screen's text in a Textual SVG screenshot, one string."""
    raw = path.read_text(encoding="utf-8")
    return html.unescape(" ".join(re.findall(r">([^<>]*)</text>", raw))).replace("\xa0", " ")


async def _drive(page_url: str, ws_url: str, run_dir: Path, shot: Path) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        dt = DevTools(ws)
        await dt.call("Page.enable")
        await dt.call("Page.navigate", url=page_url)
        # The app is up when xterm's input box exists and the trainer has reported a few steps.
        for _ in range(100):
            got = await dt.call("Runtime.evaluate", expression="!!document.querySelector('.xterm-helper-textarea')")
            if got["result"].get("value"):
                break
            await asyncio.sleep(0.2)
        await dt.call("Runtime.evaluate", expression="document.querySelector('.xterm-helper-textarea').focus()")
        await asyncio.sleep(4)  # first paint, the trainer process, the first evaluation
        await dt.key("u", "KeyU", 85, modifiers=2)  # ctrl+u: clear the starting prompt
        await asyncio.sleep(1)
        await dt.type(PREFIX)
        text = ""
        for _ in range(6):
            await asyncio.sleep(3)  # let it train: the loss chart fills, the bars follow
            before = set(run_dir.glob("*.svg"))
            await dt.key("p", "KeyP", 80, modifiers=2)  # ctrl+p: the command palette
            await asyncio.sleep(1)
            await dt.type("Export loss history")
            await asyncio.sleep(1)
            await dt.key("Enter", "Enter", 13, text="\r")
            new = await asyncio.to_thread(wait, "the SVG export", lambda b=before: set(run_dir.glob("*.svg")) - b)
            text = _svg_text(sorted(new)[-1])
            if PREFIX in text and "%" in text and "val" in text:
                break
        await asyncio.sleep(6)  # the export's notification fades
        png = await dt.call("Page.captureScreenshot", format="png")
        shot.write_bytes(base64.b64decode(png["data"]))
        return text


def test_serve_without_textual_serve_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "textual_serve", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)
    assert main(["serve", "--port", "8123"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'tui-gpt[serve]'" in err


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_serve_in_headless_chromium(tmp_path):
    pytest.importorskip("textual_serve")
    pytest.importorskip("aiohttp")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    server = start_serve(tmp_path, [*APP_ARGS, "--out", str(run_dir / "ckpt")])
    profile = tmp_path / "profile"
    browser = None
    try:
        page_url = server.url  # the printed URL, with its token
        browser = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        active = profile / "DevToolsActivePort"
        wait("chromium's DevTools port", active.exists)
        devtools_port = wait("the port number", lambda: active.read_text().split("\n")[0].strip())
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json", timeout=5) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        shot = tmp_path / "tui-gpt-serve.png"
        text = asyncio.run(_drive(page_url, pages[0]["webSocketDebuggerUrl"], run_dir, shot))
        if os.environ.get("TUI_GPT_SCREENSHOT"):
            shutil.copy(shot, os.environ["TUI_GPT_SCREENSHOT"])
            Path(os.environ["TUI_GPT_SCREENSHOT"]).with_suffix(".txt").write_text(text, encoding="utf-8")
        assert shot.stat().st_size > 10_000  # a real picture, not a blank page
        assert PREFIX in text  # the prompt, typed in the browser
        assert re.search(r"\d+(\.\d+)?%", text)  # the next-token probabilities
        assert "val" in text and "train" in text  # the loss chart's legend
    finally:
        if browser is not None:  # in its own process group: end it and its children
            os.killpg(browser.pid, signal.SIGTERM)
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(browser.pid, signal.SIGKILL)
                browser.wait(timeout=10)
        server.stop()
