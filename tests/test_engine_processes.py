"""Processes have parents: the trainer, its watchdog and a sweep's runs end with whoever started them.

And a machine without room for shared memory is one line, not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import polling
import pytest
from fake_trainer import TINY_TEXT

from tui_gpt import lifeline
from tui_gpt.engine.savedir import CheckpointLock
from tui_gpt.errors import TuiGptError
from tui_gpt.link import client as client_module
from tui_gpt.link import preempt
from tui_gpt.link.client import TrainerClient
from tui_gpt.link.protocol import Failed

LINUX = sys.platform.startswith("linux") and Path("/proc").is_dir()
linux_only = pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG and /proc are Linux's")


def state(pid: int) -> str:
    """The process's state letter: R running, S sleeping, T stopped, Z exited; '' when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return ""


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    return state(pid) in ("", "Z")


def wait(what: str, check, timeout: float = 60.0):
    return polling.wait(what, check, timeout, every=0.02)


def _kill_all(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---- the mechanism: a child asks to end with its parent -----------------------------------------------

PARENT = """
import subprocess, sys, time
from tui_gpt import lifeline
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=lifeline.child_env())
print(child.pid, flush=True)
time.sleep(120)
"""

CHILD = """
import signal, sys, time
from tui_gpt import lifeline
signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
if not lifeline.adopted(signal.SIGTERM):
    sys.exit(3)
print("adopted", flush=True)
time.sleep(120)
"""


@linux_only
def test_a_child_started_with_child_env_ends_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "adopted"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait("the orphan to end", lambda: gone(child), 30)
    finally:
        _kill_all([child, parent.pid])


def test_a_parent_already_gone_is_noticed(monkeypatch):
    monkeypatch.setenv(lifeline.PARENT_ENV, str(os.getppid() + 1_000_000))  # no one's parent
    assert lifeline.adopted(signal.SIGCONT) is False
    assert lifeline.PARENT_ENV not in os.environ  # not passed on to this process's own children
    monkeypatch.setenv(lifeline.PARENT_ENV, str(os.getppid()))
    assert lifeline.adopted(signal.SIGCONT) is True


# ---- row 9: a sweep killed with SIGKILL takes its runs with it -------------------------------------


@linux_only
def test_the_runs_of_a_killed_sweep_end_with_it(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    env = {**os.environ, "TUI_GPT_DATA": str(tmp_path / "data"), "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "tui_gpt", "sweep", "--lr", "1e-3,2e-3", "--steps", "1000000", "--jobs", "2"]
    cmd += ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "8", "--batch-size", "2"]
    cmd += ["--out", str(tmp_path / "S"), str(text)]
    sweep = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    runs: list[int] = []
    try:
        runs = wait("both runs to start", lambda: len(c := children(sweep.pid)) == 2 and c)
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait(10)
        wait("the runs to end with their sweep", lambda: all(gone(pid) for pid in runs), 60)
    finally:
        _kill_all([*runs, sweep.pid])


# ---- row 10: a held trainer goes on (and saves, and ends) when its app dies, watchdog or not ------------

APP = """
import sys, time
from tui_gpt.link.client import TrainerClient
from tui_gpt.settings import RunSpec
if __name__ == "__main__":
    train = {"eval_interval": 0, "batch_size": 4, "dtype": "float32"}
    spec = RunSpec(n_layer=1, n_head=2, n_embd=32, block_size=16, train=train)
    steps = []
    client = TrainerClient(lambda ev: steps.append(ev), out=sys.argv[1], autosave=3600)
    client.start(spec)
    while sum(1 for e in steps if type(e).__name__ == "Losses") < 3:
        time.sleep(0.05)
    print(client.process.pid, flush=True)
    sys.stdin.readline()  # the test has killed the watchdog
    client.hold.stop()
    print("held", flush=True)
    time.sleep(120)
"""


@linux_only
@pytest.mark.skipif(not preempt.SUPPORTED, reason="needs SIGSTOP")
def test_a_held_trainer_whose_watchdog_and_app_are_killed_saves_and_ends(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(APP)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    app = subprocess.Popen([sys.executable, str(script), str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True, env=env)  # fmt: skip
    trainer = 0
    try:
        trainer = int(app.stdout.readline())
        watchdogs = wait("the watchdog", lambda: children(trainer))
        _kill_all(watchdogs)
        wait("the watchdog to end", lambda: all(gone(pid) for pid in watchdogs), 10)
        app.stdin.write("go\n")
        app.stdin.flush()
        assert app.stdout.readline().strip() == "held"
        wait("the hold", lambda: state(trainer) == "T", 5)
        os.kill(app.pid, signal.SIGKILL)
        app.wait(10)
        wait("the trainer to save and end", lambda: gone(trainer), 60)
        assert (out / "model.safetensors").is_file(), sorted(p.name for p in out.iterdir())
        with CheckpointLock(out):  # free: `train --out` there would not say "in use by pid N"
            pass
    finally:
        _kill_all([app.pid, *([trainer] if trainer else [])])


# ---- row 11: no room in /dev/shm ------------------------------------------------------------------


def _no_room(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_no_room_for_shared_memory_is_one_line_before_the_app(monkeypatch):
    import _multiprocessing
    import multiprocessing.synchronize  # noqa: F401  (first: it reads SemLock's constants as it loads)

    monkeypatch.setattr(_multiprocessing, "SemLock", _no_room)  # what sem_open in a full /dev/shm gives
    with pytest.raises(TuiGptError, match="/dev/shm") as caught:
        TrainerClient(lambda ev: None)
    assert "\n" not in str(caught.value)


def test_no_room_when_the_trainer_restarts_is_a_failed_event_not_a_crash(monkeypatch):
    events: list[object] = []
    client = TrainerClient(events.append)
    monkeypatch.setattr(client_module._ctx, "Queue", _no_room)
    client.start(None)
    assert [type(e) for e in events] == [Failed]
    assert "/dev/shm" in events[0].message
    assert client.process is None and not client.alive


@linux_only
@pytest.mark.parametrize("command", ["{text} --out run", "bench --ui --keys 2 --text {text}"], ids=["app", "bench-ui"])
def test_the_app_with_a_full_dev_shm_says_so_in_one_line(tmp_path, command):
    """A real full /dev/shm: a 64 KB tmpfs, filled, in a mount namespace of its own (root only)."""
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    command = command.format(text=text)
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=64k tmpfs /dev/shm || exit 99
        dd if=/dev/zero of=/dev/shm/filler bs=4k count=16 2>/dev/null
        cd {tmp_path}
        exec script -qec "{sys.executable} -m tui_gpt {command} --n-layer 1 --n-embd 16 --n-head 2" /dev/null
    """)
    env = {**os.environ, "TUI_GPT_DATA": str(tmp_path / "data"), "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env,
                              timeout=120)  # fmt: skip
    except FileNotFoundError:
        pytest.skip("no unshare")
    if done.returncode == 99 or "unshare:" in done.stderr or "script:" in done.stderr:
        pytest.skip(f"cannot mount a private /dev/shm here: {done.stderr.strip()}")
    shown = done.stdout.replace("\r", "")
    assert done.returncode == 2, shown
    assert "Traceback" not in shown and "│" not in shown, shown
    assert "/dev/shm" in shown
    assert not (tmp_path / "run").exists()


# ---- the think-ahead thread is joined when the app ends --------------------------------------------


def test_the_think_ahead_thread_is_stopped_and_joined():
    from tui_gpt.app import prompt_probes

    started, release = threading.Event(), threading.Event()

    class Replica:
        def think_ahead(self, found, text, k, temperature, stale) -> None:
            started.set()
            while not stale():
                release.wait(0.01)

    probes = prompt_probes.Probes.__new__(prompt_probes.Probes)
    probes.generation = 0
    probes.ahead = None
    probes.run = type("Run", (), {"replica": Replica()})()
    probes.settings = type("Settings", (), {"top_k": 5, "temperature": 1.0})()
    probes._think_ahead("abc", 0, None)
    assert started.wait(10)
    probes.stop()
    assert not any(t.name == prompt_probes.AHEAD_THREAD and t.is_alive() for t in threading.enumerate())


# ---- row 1's leftovers: the resource tracker outlives a closed terminal's SIGHUP -----------------------

TRACKER = """
from multiprocessing import resource_tracker
from pathlib import Path
from tui_gpt.link.client import prepare
prepare()
pid = resource_tracker._resource_tracker._pid
status = Path(f"/proc/{pid}/status").read_text().splitlines()
print(int(next(line for line in status if line.startswith("SigIgn:")).split()[1], 16))
"""


@linux_only
def test_the_resource_tracker_ignores_a_hang_up():
    """It unlinks the trainer link's semaphores if the app dies unclean: a SIGHUP ended it first, and they stayed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", TRACKER], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    ignored = int(done.stdout)  # SIG_IGN from its exec on, not a handler it installs later: no race
    assert ignored & (1 << (signal.SIGHUP - 1)), f"SigIgn {ignored:x}"


# ---- row 1: a terminal that is gone is never written to again, and a stuck app still ends, saved ---------


def test_a_write_to_a_gone_terminal_is_dropped_and_reported_once():
    from tui_gpt.app.hangup import GoneFile

    class Terminal:
        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

        def flush(self):
            raise OSError(errno.EIO, "Input/output error")

        def fileno(self):
            return 2

    told = []
    file = GoneFile(Terminal(), lambda: told.append(1))
    assert file.write("\x1b[?1049l") == 8  # Textual's writer thread goes on, and its queue drains
    file.flush()
    file.write("more")
    assert told == [1] and file.gone and file.fileno() == 2


def test_the_deadline_saves_and_ends_an_app_whose_event_loop_never_took_the_signal(monkeypatch):
    from tui_gpt.app import hangup

    ended = threading.Event()
    codes: list[int] = []
    monkeypatch.setattr(hangup, "TAKE_SIGNAL", 0.0)
    monkeypatch.setattr(hangup, "GRACE", 0.0)
    monkeypatch.setattr(hangup, "end", lambda code: (codes.append(code), ended.set()))

    class Client:
        process = object()
        saves: list[str | None] = []

        def stop(self, save):
            self.saves.append(save)
            self.process = None

    class Run:
        leaving, ready, out = False, object(), "run"

    client, run = Client(), Run()
    deadline = hangup.Deadline(client, run)
    deadline.start(signal.SIGHUP, terminal_gone=True)
    deadline.start(signal.SIGTERM)  # a second signal arms nothing more
    assert ended.wait(10)
    assert client.saves == ["run"] and run.leaving
    assert codes == [128 + signal.SIGHUP]
