"""`tui-gpt serve` through a raw websocket, as another web page (or a script) would reach it.

Only a client with the printed URL's token and the page's own origin gets a session; anything
else is refused with 403 before a tui-gpt process starts. A session whose socket closes (the tab
was closed, or the server died) saves its run, as a terminal's hang-up does. At most
--max-sessions run at once, each saving into a new folder of its own (OUT-1, OUT-2...); one more
is refused with 503 and starts nothing. Skips where textual-serve is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
import time
import urllib.request
from http.cookies import Morsel
from pathlib import Path

import pytest
from polling import wait
from served import Served, command_line, descendants, start_serve, status

from tui_gpt.commands.cli import parser_app
from tui_gpt.commands.serve import app_command, session_folder
from tui_gpt.engine.savedir import is_checkpoint_dir
from tui_gpt.errors import TuiGptError

pytest.importorskip("textual_serve")
aiohttp = pytest.importorskip("aiohttp")

# Escape sequences and control codes in the app's screen data, to read its text.
ESCAPES = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b.")
STEP = re.compile(r"step ([\d,]+)")
# float32: no --dtype auto trial in each session's trainer (the smoke test runs the app as it comes).
APP_ARGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--dtype", "float32"]


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


async def _until_step(ws, steps: int, timeout: float = 25) -> int:
    """Read a session's screen until it shows `steps` steps trained; the step it shows."""
    screen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await ws.receive(timeout=deadline - time.monotonic())
        if msg.type != aiohttp.WSMsgType.BINARY:
            continue
        screen = (screen + ESCAPES.sub("", msg.data.decode("utf-8", "replace")))[-4000:]
        seen = [int(n.replace(",", "")) for n in STEP.findall(screen)]
        if seen and max(seen) >= steps:
            return max(seen)
    raise AssertionError(f"the screen never showed step {steps}: {screen[-500:]!r}")


async def _train_then_lose(served: Served, steps: int, kill_server: bool) -> int:
    """Open a session, read its screen until it shows `steps` steps trained, then lose it.

    Either the socket closes, as when the tab is closed, or the server is killed outright.
    """
    ws_url = f"ws://127.0.0.1:{served.port}/ws?token={served.token}&width=160&height=48"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, headers={"Origin": served.origin}) as ws:
        seen = await _until_step(ws, steps)
        if kill_server:  # the app's stdin then just ends
            os.kill(served.proc.pid, signal.SIGKILL)
        return seen  # leaving the block closes the socket


@pytest.mark.parametrize("kill_server", [False, True], ids=["the tab closes", "the server is killed"])
def test_losing_the_browser_saves_the_run(served: Served, tmp_path: Path, kill_server: bool):
    from tui_gpt.engine.checkpoint import load_model

    seen = asyncio.run(_train_then_lose(served, steps=20, kill_server=kill_server))
    wait("the session's processes to save and end", lambda: not served.sessions(), timeout=20)
    out = tmp_path / "run-1"  # the first session's own folder
    assert json.loads((out / "trainer.json").read_text())["step"] >= seen
    model, _, config = load_model(out)
    assert config["model"]["n_embd"] == 32 and sum(p.numel() for p in model.parameters()) > 0


# ---- sessions: a cap, and a run folder each -------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--out", "mine"],
        ["--out=mine", "a.txt"],
        ["--ou", "mine", "--resume", "old"],  # argparse takes a prefix of an option's name
        ["--out", "mine", "--", "--odd-name.txt"],  # after "--", everything is text
    ],
)
def test_a_session_command_saves_into_its_own_folder_whatever_out_says(argv):
    words = shlex.split(app_command(argv, Path("/runs/mine-7")))
    assert words[:4] == ["exec", sys.executable, "-m", "tui_gpt"]  # the shell becomes the app: no extra process
    args = parser_app().parse_args(words[4:])
    assert args.out == "/runs/mine-7"
    assert args.text == [w for w in argv if w.endswith(".txt")]


def test_session_folders_are_new_and_numbered_on_from_those_there(tmp_path):
    base = tmp_path / "runs" / "mine"
    assert session_folder(base) == base.with_name("mine-1")  # the missing parent is made
    (tmp_path / "runs" / "mine-3").mkdir()  # an earlier launch's run: never reused
    (tmp_path / "runs" / ".mine-4.old").mkdir()  # a save's folder aside: its name is skipped
    (tmp_path / "runs" / "mine-x").mkdir()
    assert [session_folder(base).name for _ in range(2)] == ["mine-5", "mine-6"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in (base.with_name("mine-5"), base.with_name("mine-6")))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(TuiGptError, match="cannot make a folder for the session's run"):
        session_folder(tmp_path / "file" / "mine")


async def _two_sessions_and_one_more(served: Served) -> tuple[list[int], dict[int, list[int]]]:
    """Two sessions that train, then a third websocket and the page while both run; the steps seen."""
    url = f"ws://127.0.0.1:{served.port}/ws?token={served.token}&width=160&height=48"
    origin = {"Origin": served.origin}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=origin) as one,
        session.ws_connect(url, headers=origin) as two,
    ):
        seen = [await _until_step(one, 1), await _until_step(two, 1)]
        apps = served.children()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with session.ws_connect(url, headers=origin):
                pass
        assert refused.value.status == 503
        async with session.get(served.url) as page:  # what a browser tab shows: why, in one line
            assert page.status == 503
            why = (await page.text()).strip()
        assert "\n" not in why and "2 sessions already running" in why and "--max-sessions" in why
        assert sorted(served.children()) == sorted(apps), "the refused session started a process"
        return seen, {app: descendants(app) for app in apps}


def test_sessions_beyond_the_cap_are_refused_and_each_saves_into_its_own_folder(tmp_path: Path):
    from tui_gpt.engine.checkpoint import load_model

    served = start_serve(tmp_path, ["--max-sessions", "2", *APP_ARGS, "--out", str(tmp_path / "run")])
    try:
        seen, trees = asyncio.run(_two_sessions_and_one_more(served))
        # Four processes a session: the app (no shell around it), its resource tracker, its trainer and the
        # trainer's watchdog.
        assert len(trees) == 2
        for app, below in trees.items():
            assert command_line(app)[:3] == [sys.executable, "-m", "tui_gpt"]
            assert len(below) <= 3, [command_line(pid)[-2:] for pid in below]
        wait("both sessions to save and end", lambda: not served.children(), timeout=20)
        folders = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run"))
        assert folders == ["run-1", "run-2"], "the refused session made a folder"
        steps = [json.loads((tmp_path / f / "trainer.json").read_text())["step"] for f in folders]
        assert min(steps) >= min(seen)
        for folder in folders:
            assert load_model(tmp_path / folder)[2]["model"]["n_embd"] == 32
        # A closed session frees its place; one that never saved leaves no folder behind.
        assert asyncio.run(_handshake(f"ws://127.0.0.1:{served.port}/ws?token={served.token}", served.origin)) == 101
        wait("the third session to end", lambda: not served.children(), timeout=20)
        third = tmp_path / "run-3"
        assert not third.exists() or is_checkpoint_dir(third)
        log = served.log.read_text()
        assert f"saves into {tmp_path / 'run-1'}" in log and f"saves into {tmp_path / 'run-2'}" in log
    finally:
        served.stop()
