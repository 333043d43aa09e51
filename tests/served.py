"""The real `tui-gpt serve` in a subprocess, for the serve tests: its port, printed URL, token and children."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from polling import wait

URL = re.compile(r"open (http://\S+/\?token=([\w-]+))")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url: str) -> int:
    """The HTTP status of a GET, 0 while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _processes(field: int, value: int) -> list[int]:
    """Live processes whose /proc stat `field` (after the name: 1 ppid, 2 process group) is `value`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()  # the name may hold spaces and ')'
        except (OSError, IndexError):
            continue
        if int(after_name[field]) == value and after_name[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    return _processes(1, pid)


def descendants(pid: int) -> list[int]:
    """`pid`'s children, theirs and so on: also those that left its process group or session."""
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    url: str  # the URL the server printed, with its token
    token: str
    log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def children(self) -> list[int]:
        return children(self.proc.pid)

    def sessions(self) -> list[int]:
        """Every process the server started, also once it is gone: its process group but itself."""
        return [pid for pid in _processes(2, self.proc.pid) if pid != self.proc.pid]

    def stop(self) -> None:
        """End the server and whatever it started: its process group, which outlives a dead server."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:  # nothing of the group is left
                break
            try:
                self.proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait(timeout=10)


def start_serve(tmp_path: Path, app_args: Sequence[str]) -> Served:
    """`tui-gpt serve` on a free port, once it answers; its output goes to tmp_path/serve.log."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui_gpt", "serve", "--port", str(port), *app_args],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # 60 s: on a loaded 2-core machine the server's imports alone have taken over 20 s
        found = wait(
            "the URL it prints", lambda: proc.poll() is None and URL.search(log.read_text(errors="replace")), 60
        )
        served = Served(proc, port, found.group(1), found.group(2), log)
        wait("the server to answer", lambda: status(served.origin + "/"))
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return served
