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
