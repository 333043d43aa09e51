"""Smoke test in a real terminal: the installed `tui-gpt` command inside tmux, keys in, screen out."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_trainer import TINY_TEXT

TUI_GPT = Path(sys.executable).parent / "tui-gpt"

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not TUI_GPT.exists(), reason=f"{TUI_GPT} is not installed (pip install -e .)"),
]

STEP = re.compile(r"(?:training|paused) · step ([\d,]+)")
PERCENT = re.compile(r"\d+\.\d%")


class Tmux:
    """One detached session on a private tmux server (-L), so nothing touches the user's tmux."""

    def __init__(self) -> None:
        self.socket = f"tui-gpt-test-{uuid.uuid4().hex[:10]}"
        self.session = "app"

    def tmux(self, *args: str, check: bool = True) -> str:
        # env: os.environ, not the process's own environment, where pytest's readline put LINES and COLUMNS
        # (80x24 when stdin is no terminal): the app would take those over the size of the tmux window.
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10, env=dict(os.environ)
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: str, width: int = 160, height: int = 48) -> None:
        self.tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), command
        )

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def wait(self, cond: Callable[[str], object], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if cond(screen):
                return screen
            if "EXITED" in screen:
                raise AssertionError(f"the app exited while waiting for {what}; the screen was:\n{screen}")
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; the screen was:\n{screen}")

    def kill(self) -> None:
        self.tmux("kill-server", check=False)


def _step(screen: str) -> int | None:
    m = STEP.search(screen)
    return int(m.group(1).replace(",", "")) if m else None


def _next_token_pane_filled(screen: str) -> bool:
    return "Next word" in screen and len(PERCENT.findall(screen)) >= 3


def test_the_app_in_a_real_terminal(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out = tmp_path / "run"
    args = [
        str(TUI_GPT),
        str(text),
        *("--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--batch-size", "4"),
        *("--out", str(out)),
    ]
    command = f"sh -c {shlex.quote(shlex.join(args) + '; echo EXITED $?; sleep 30')}"
    tmux = Tmux()
    try:
        tmux.start(command)
        screen = tmux.wait(_next_token_pane_filled, "next-token probabilities")
        assert "The quick brown" in screen
        assert "^q" in screen, "the footer shows the quit key"

        tmux.keys(" fox", literal=True)
        tmux.wait(lambda s: "The quick brown fox" in s, "the typed prefix")

        first = _step(tmux.wait(_step, "the step counter"))
        tmux.wait(lambda s: (_step(s) or 0) > first, "the step counter to advance")

        # shift+F3 as tmux and xterm send it, ESC [ 1 ; 2 R: the bytes of a cursor report (app/terminal_keys.py)
        tmux.keys("S-F3")
        tmux.wait(lambda s: "Heads · which heads copy" in s, "the heads view on shift+F3")
        tmux.keys("Escape")
        tmux.wait(lambda s: "Heads · which heads copy" not in s, "the heads view to close")

        tmux.keys("C-q")
        screen = tmux.wait(lambda s: "EXITED" in s, "the app to exit")
        assert "EXITED 0" in screen, screen
        assert "saved step" in screen
        assert json.loads((out / "trainer.json").read_text())["step"] > first
    finally:
        tmux.kill()


@pytest.mark.parametrize("sig", ["TERM", "HUP"])
def test_a_signal_saves_the_run_and_gives_the_terminal_back(tmp_path, sig):
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out = tmp_path / "run"
    pidfile = tmp_path / "pid"
    args = [
        str(TUI_GPT),
        str(text),
        *("--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--batch-size", "4"),
        *("--out", str(out)),
    ]
    # `exec` in a subshell: the pid written is the app's own, as a terminal's hang-up or a kill would find it.
    script = f"(echo $BASHPID > {shlex.quote(str(pidfile))}; exec {shlex.join(args)}); echo EXITED $?; sleep 30"
    tmux = Tmux()
    try:
        tmux.start(f"bash -c {shlex.quote(script)}")
        tmux.wait(_next_token_pane_filled, "next-word probabilities")
        first = _step(tmux.wait(_step, "the step counter"))
        tmux.wait(lambda s: (_step(s) or 0) > first, "the step counter to advance")
        subprocess.run(["kill", f"-{sig}", pidfile.read_text().strip()], check=True)
        screen = tmux.wait(lambda s: "EXITED" in s, "the app to exit")
        code = 128 + {"TERM": 15, "HUP": 1}[sig]
        assert f"EXITED {code}" in screen, screen
        assert "saved step" in screen, screen
        saved = json.loads((out / "trainer.json").read_text())["step"]
        assert saved > first
        assert f"saved step {saved} to" in screen
        # The terminal is the shell's again: no alternate screen, no mouse reporting left on.
        modes = tmux.tmux("display-message", "-p", "-t", tmux.session, "#{alternate_on} #{mouse_any_flag}")
        assert modes.split() == ["0", "0"], modes
    finally:
        tmux.kill()


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def _private_shm(shm: Path) -> str:
    """A command prefix giving the app its own /dev/shm (`shm`), to see what it leaves; '' where it cannot."""
    shm.mkdir()
    probe = f"mount --bind {shlex.quote(str(shm))} /dev/shm"
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "sh", "-c", probe]).returncode != 0:
        return ""
    return probe + " && "


@pytest.mark.parametrize("stderr", ["terminal", "file"])
def test_closing_the_terminal_ends_the_app_saved_leaving_nothing(tmp_path, stderr):
    """#25 row 1: tmux killed, the app outlived its terminal forever, deaf to every signal, and left its semaphores."""
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out, pidfile, errors, shm = tmp_path / "run", tmp_path / "pid", tmp_path / "stderr", tmp_path / "shm"
    args = [
        str(TUI_GPT),
        str(text),
        *("--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--batch-size", "4"),
        *("--out", str(out)),
    ]
    shm_prefix = _private_shm(shm)
    redirect = f" 2> {shlex.quote(str(errors))}" if stderr == "file" else ""
    inner = f"{shm_prefix}echo $$ > {shlex.quote(str(pidfile))} && exec {shlex.join(args)}{redirect}"
    command = f"unshare -m sh -c {shlex.quote(inner)}" if shm_prefix else f"sh -c {shlex.quote(inner)}"
    tmux = Tmux()
    try:
        tmux.start(command)
        if stderr == "terminal":
            tmux.wait(_next_token_pane_filled, "next-word probabilities")
            first = _step(tmux.wait(_step, "the step counter"))
            tmux.wait(lambda s: (_step(s) or 0) > first, "the step counter to advance")
        else:  # Textual draws on stderr: the screen is in the file, escape codes and all
            first = 0
            trained = lambda s: errors.exists() and re.search(r"· step [1-9]", errors.read_text(errors="replace"))  # noqa: E731
            tmux.wait(trained, "the step counter, drawn into the stderr file")
        app = int(pidfile.read_text())
        tmux.kill()  # the terminal disappears
        deadline = time.monotonic() + 20  # the goal is 5 s; a loaded machine gets more, a hung app never ends
        while not _gone(app) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(app), f"the app (pid {app}) outlived its terminal"
        assert json.loads((out / "trainer.json").read_text())["step"] > first  # saved what it trained
        if shm_prefix:  # the resource tracker, once the app is gone, leaves nothing behind either
            end = time.monotonic() + 10
            while list(shm.iterdir()) and time.monotonic() < end:
                time.sleep(0.1)
            assert not list(shm.iterdir()), sorted(p.name for p in shm.iterdir())
        if stderr == "file":
            assert "Traceback" not in errors.read_text(errors="replace"), errors.read_text(errors="replace")[-3000:]
    finally:
        tmux.kill()
        if pidfile.exists() and not _gone(int(pidfile.read_text() or 0)):
            os.kill(int(pidfile.read_text()), 9)
