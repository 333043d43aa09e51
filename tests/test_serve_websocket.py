"""`tui-gpt serve` through a raw websocket, as another web page (or a script) would reach it.

Only a client with the printed URL's token and the page's own origin gets a session; anything
else is refused with 403 before a tui-gpt process starts. Skips where textual-serve is missing.
"""

from __future__ import annotations

import asyncio
import urllib.request
from http.cookies import Morsel
from pathlib import Path

import pytest
from served import Served, start_serve, status, wait

pytest.importorskip("textual_serve")
aiohttp = pytest.importorskip("aiohttp")

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
