"""`tui-gpt serve` through a raw websocket, as another web page (or a script) would reach it.

Only a client with the printed URL's token and the page's own origin gets a session; anything
else is refused with 403 before a tui-gpt process starts. A session whose socket closes (the tab
was closed, or the server died) saves its run, as a terminal's hang-up does. Skips where textual-serve is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from http.cookies import Morsel
from pathlib import Path

import pytest
from served import Served, start_serve, status, wait

pytest.importorskip("textual_serve")
aiohttp = pytest.importorskip("aiohttp")

# Escape sequences and control codes in the app's screen data, to read its text.
ESCAPES = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b.")
STEP = re.compile(r"step ([\d,]+)")
APP_ARGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32"]


@pytest.fixture
def served(tmp_path: Path):
    server = start_serve(tmp_path, [*APP_ARGS, "--out", str(tmp_path / "run")])
    try:
        yield server
    finally:
        server.stop()


async def _handshake(url: str, origin: str | None, cookies: dict[str, str] | None = None) -> int:
    """The status a websocket handshake gets: 101 when accepted (the socket is then closed)."""
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession(cookies=cookies) as session:
        try:
            async with session.ws_connect(url, headers=headers, autoping=False):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


def test_a_foreign_origin_or_a_missing_token_gets_403_and_no_process(served: Served):
    ws = f"ws://127.0.0.1:{served.port}/ws"
    wrong = served.token[:-1] + ("A" if served.token[-1] != "A" else "B")  # one character off
    cases = {
        "a foreign origin, with the token": (f"{ws}?token={served.token}", "http://evil.example"),
        "a foreign origin on the same host": (f"{ws}?token={served.token}", "http://127.0.0.1:1"),
        "no origin, with the token": (f"{ws}?token={served.token}", None),
        "no token": (ws, served.origin),
        "a wrong token": (f"{ws}?token={wrong}", served.origin),
        "an empty token": (f"{ws}?token=", served.origin),
    }
    for case, (url, origin) in cases.items():
        assert asyncio.run(_handshake(url, origin)) == 403, case
    wrong_cookie = {f"tui-gpt-token-{served.port}": "nope"}
    assert asyncio.run(_handshake(ws, served.origin, wrong_cookie)) == 403
    # The page itself needs the token too.
    assert status(f"{served.origin}/") == 403
    assert status(f"{served.origin}/?token=nope") == 403
    assert status(f"{served.origin}/download/anything") == 403
    assert served.children() == [], "a refused connection started a process"


async def _session_through_the_page(served: Served) -> tuple[str, bytes, Morsel[str]]:
    """Open the printed URL as a browser would, then its websocket with the cookie the page set."""
    jar = aiohttp.CookieJar(unsafe=True)  # unsafe: keep cookies for an IP address such as 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(served.url) as page:
            assert page.status == 200
            cookie = page.cookies[f"tui-gpt-token-{served.port}"]
            html = await page.text()
        ws_url = f"ws://127.0.0.1:{served.port}/ws?width=120&height=40"  # no token: the cookie carries it
        async with session.ws_connect(ws_url, headers={"Origin": served.origin}) as ws:
            msg = await ws.receive(timeout=20)  # the app's first screen data
            assert served.children(), "no process for the session"
            return html, msg.data if isinstance(msg.data, bytes) else b"", cookie


def test_the_printed_url_opens_a_session(served: Served):
    html, data, cookie = asyncio.run(_session_through_the_page(served))
    assert data, "no screen data from the app"
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert f'data-session-websocket-url="ws://127.0.0.1:{served.port}/ws"' in html
    # A tab opened as localhost connects to localhost too, where its cookie and origin belong.
    localhost = f"localhost:{served.port}"
    with urllib.request.urlopen(urllib.request.Request(served.url, headers={"Host": localhost}), timeout=5) as r:
        assert f'data-session-websocket-url="ws://{localhost}/ws"' in r.read().decode()
    # The token on the websocket's own URL is enough, without the page's cookie.
    assert asyncio.run(_handshake(f"ws://127.0.0.1:{served.port}/ws?token={served.token}", served.origin)) == 101
    wait("the sessions' processes to end", lambda: not served.children())
    log = served.log.read_text()
    assert "/?token=…" in log  # the request log blanks it
    assert served.token not in log.replace(served.url, ""), "the token was printed twice"


async def _train_then_lose(served: Served, steps: int, kill_server: bool) -> int:
    """Open a session, read its screen until it shows `steps` steps trained, then lose it.

    Either the socket closes, as when the tab is closed, or the server is killed outright.
    """
    ws_url = f"ws://127.0.0.1:{served.port}/ws?token={served.token}&width=160&height=48"
    screen = ""
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, headers={"Origin": served.origin}) as ws:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            msg = await ws.receive(timeout=deadline - time.monotonic())
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            screen = (screen + ESCAPES.sub("", msg.data.decode("utf-8", "replace")))[-4000:]
            seen = [int(n.replace(",", "")) for n in STEP.findall(screen)]
            if seen and max(seen) >= steps:
                if kill_server:  # the app's stdin then just ends
                    os.kill(served.proc.pid, signal.SIGKILL)
                return max(seen)  # leaving the block closes the socket
    raise AssertionError(f"the screen never showed step {steps}: {screen[-500:]!r}")


@pytest.mark.parametrize("kill_server", [False, True], ids=["the tab closes", "the server is killed"])
def test_losing_the_browser_saves_the_run(served: Served, tmp_path: Path, kill_server: bool):
    from tui_gpt.checkpoint import load_model

    seen = asyncio.run(_train_then_lose(served, steps=20, kill_server=kill_server))
    wait("the session's processes to save and end", lambda: not served.sessions(), timeout=20)
    out = tmp_path / "run"
    assert json.loads((out / "trainer.json").read_text())["step"] >= seen
    model, _, config = load_model(out)
    assert config["model"]["n_embd"] == 32 and sum(p.numel() for p in model.parameters()) > 0
