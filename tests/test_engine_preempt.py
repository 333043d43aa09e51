"""Preemption: the app stops the real trainer process for a key, exactly, and never leaves it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polling
import pytest
import safetensors.torch

from tui_gpt.link import preempt
from tui_gpt.link.client import TrainerClient
from tui_gpt.link.protocol import Losses, Pause, Ready, Save, Saved, Step
from tui_gpt.settings import RunSpec

pytestmark = pytest.mark.skipif(
    not (preempt.SUPPORTED and Path("/proc").is_dir()), reason="needs SIGSTOP and /proc to watch the trainer"
)

SPEC = RunSpec(
    n_layer=1, n_head=2, n_embd=32, block_size=16, train={"eval_interval": 0, "batch_size": 4, "dtype": "float32"}
)


def state(pid: int) -> str:
    """The process's state letter: R running, S sleeping, T stopped, Z exited; '' when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return ""


def wait(what: str, check, timeout: float = 60.0):
    return polling.wait(what, check, timeout, every=0.01)


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def __call__(self, ev: object) -> None:
        self.events.append(ev)

    def step(self) -> int:
        return max((e.events[-1]["step"] for e in self.events if isinstance(e, Losses) and e.events), default=0)

    def ready(self) -> bool:
        return any(isinstance(e, Ready) for e in self.events)


@contextmanager
def training(rec: Recorder) -> Iterator[TrainerClient]:
    """The real trainer process, training the tiny SPEC, a few steps in."""
    client = TrainerClient(rec, threads=1)
    client.start(SPEC)
    try:
        wait("the trainer to train", lambda: rec.step() > 5)
        yield client
    finally:
        client.stop(save=None)


def test_a_held_trainer_stops_at_once_and_goes_on_when_released():
    rec = Recorder()
    with training(rec) as client:
        pid = client.process.pid
        t0 = time.perf_counter()
        client.hold.stop()
        wait("the stop", lambda: state(pid) == "T", 1.0)
        stopped_in = time.perf_counter() - t0
        step = rec.step()
        time.sleep(0.5)
        assert state(pid) == "T" and rec.step() <= step + 1  # a loss batch in flight may still land
        client.hold.release()
        wait("training to go on", lambda: rec.step() > step + 5, 10)
        assert stopped_in < 0.1, f"the trainer took {stopped_in * 1000:.0f} ms to stop"


def test_the_watchdog_continues_a_trainer_held_too_long():
    rec = Recorder()
    with training(rec) as client:
        pid = client.process.pid
        client.hold.stop()
        wait("the stop", lambda: state(pid) == "T", 1.0)
        wait("the watchdog", lambda: state(pid) not in ("T", ""), preempt.MAX_HOLD + 2)
        assert not client.hold.held


def _trained_weights(tmp_path: Path, name: str, interrupt: bool) -> dict:
    """30 steps from step 0 in the real trainer process, saved; with `interrupt`, stopped and continued all along."""
    saved: list[Saved] = []
    rec = Recorder()
    client = TrainerClient(lambda ev: (rec(ev), isinstance(ev, Saved) and saved.append(ev)), threads=1)
    client.start(SPEC)
    client.send(Pause())  # taken before the first step: both runs start from the same step 0
    try:
        wait("the trainer to be ready", rec.ready)
        # A step at a time in both runs, so every step of the held run is stopped and continued, however
        # fast the machine (stopping it on a clock let a fast one take all 30 steps between a few holds).
        for step in range(1, 31):
            client.send(Step(1))
            if interrupt:
                client.hold.stop()
                time.sleep(0.003)
                client.hold.release()
            wait(f"step {step}", lambda step=step: rec.step() >= step, 10)
        client.send(Save(str(tmp_path / name)))
        wait("the save", lambda: saved)
        assert saved[0].step == 30
        return safetensors.torch.load_file(str(tmp_path / name / "model.safetensors"))
    finally:
        client.stop(save=None)


def test_a_preempted_run_gives_the_same_weights_as_an_unpreempted_one(tmp_path):
    plain = _trained_weights(tmp_path, "plain", interrupt=False)
    held = _trained_weights(tmp_path, "held", interrupt=True)
    assert plain.keys() == held.keys()
    for k in plain:
        assert (plain[k] == held[k]).all(), k


APP = """
import sys, time
from tui_gpt.link.client import TrainerClient
from tui_gpt.settings import RunSpec
if __name__ == "__main__":
    train = {"eval_interval": 0, "batch_size": 4, "dtype": "float32"}  # float32: no --dtype auto trial to wait for
    spec = RunSpec(n_layer=1, n_head=2, n_embd=32, block_size=16, train=train)
    steps = []
    client = TrainerClient(lambda ev: steps.append(ev), out=sys.argv[1], autosave=3600)
    client.start(spec)
    while sum(1 for e in steps if type(e).__name__ == "Losses") < 3:
        time.sleep(0.05)
    client.hold.stop()
    print(client.process.pid, flush=True)
    time.sleep(60)
"""


def test_killing_the_app_while_it_holds_the_trainer_still_saves(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(APP)
    out = tmp_path / "run"
    app = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        trainer = int(app.stdout.readline())
        wait("the hold", lambda: state(trainer) == "T", 5)
        os.kill(app.pid, signal.SIGKILL)
        app.wait(5)
        wait("the trainer to save and end", lambda: state(trainer) in ("", "Z"), 30)
        assert (out / "model.safetensors").is_file(), sorted(p.name for p in out.iterdir())
    finally:
        app.kill()
