"""The real trainer process: it trains, pauses, saves and quits under the app, and never outlives it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_trainer import TINY_TEXT
from pilot import SIZE, running, sync, wait_for

from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.commands.cli import main
from tui_gpt.settings import RunSpec

CHILD = """
import sys, time
from tui_gpt.link.client import TrainerClient
from tui_gpt.link.protocol import Losses
from tui_gpt.engine.session import RunSpec
if __name__ == "__main__":
    train = {"eval_interval": 0, "batch_size": 4, "dtype": "float32"}  # float32: no --dtype auto trial to wait for
    spec = RunSpec(n_layer=1, n_head=2, n_embd=32, block_size=16, train=train)
    trained = []
    client = TrainerClient(lambda ev: isinstance(ev, Losses) and trained.append(ev))
    client.start(spec)
    while not trained:  # loaded, and training
        time.sleep(0.05)
    print(client.process.pid, flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_trainer_exits_when_the_app_is_killed(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(CHILD)
    app = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        trainer = int(app.stdout.readline())  # once it trains
        assert _alive(trainer)
        os.kill(app.pid, signal.SIGKILL)
        app.wait(5)
        deadline = time.monotonic() + 10
        while _alive(trainer) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(trainer), "the trainer process outlived the killed app"
    finally:
        app.kill()


# ---- the real trainer process ---------------------------------------------------------


def _pid_gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return True
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return True
    return "Z" in state.split()[1]  # a zombie has exited


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to check the trainer process")
@sync
async def test_real_trainer_trains_pauses_saves_and_quits(tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out = tmp_path / "out"
    spec = RunSpec(
        sources=[str(text)],
        n_layer=1,
        n_embd=32,
        n_head=2,
        block_size=16,
        train={"eval_interval": 50, "eval_iters": 2, "batch_size": 4, "dtype": "float32"},  # no --dtype auto trial
    )
    app = GPTApp(spec, out=str(out))
    try:
        async with running(app, SIZE) as pilot:
            await wait_for(pilot, lambda: app.client.alive, 10, "the trainer process (started after the first paint)")
            await wait_for(pilot, lambda: app.run_status.step > 0, 60, "the first training steps")
            first = app.run_status.step
            await wait_for(pilot, lambda: app.run_status.step > first, 30, "the step counter to advance")
            await wait_for(pilot, lambda: getattr(app.state.replica, "step", 0) > 0, 30, "trained weights")

            await pilot.press("ctrl+r")
            assert app.run_status.paused
            await pilot.pause(1.0)  # batches in flight land
            stopped = app.run_status.step
            await pilot.pause(1.5)
            assert app.run_status.step == stopped, "training went on while paused"

            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.run_status.saved is not None, 30, "the checkpoint")
            assert app.run_status.saved.step == stopped
            assert json.loads((out / "trainer.json").read_text())["step"] == stopped
            shutil.copytree(out, tmp_path / "paused")  # for `complete`, once the app is gone and prints go to stdout

            await pilot.press("ctrl+r")
            assert not app.run_status.paused
            await wait_for(pilot, lambda: app.run_status.step > stopped, 30, "training to resume")
            pid = app.client.process.pid
            assert not _pid_gone(pid)
            at_quit = app.run_status.step
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: not app.is_running, 15, "the app to exit")
        deadline = time.monotonic() + 2.0
        while not _pid_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pid_gone(pid), f"trainer process {pid} is still running after quit"
        saved = json.loads((out / "trainer.json").read_text())["step"]
        assert saved >= at_quit > stopped, "quit saves the latest step"
        capsys.readouterr()
        assert main(["complete", str(tmp_path / "paused"), "The", "--top-k", "3"]) == 0  # the paused run's save
        done = capsys.readouterr().out
        assert "next token after 'The'" in done and "rank" in done
        ranks = [m.group(1) for m in re.finditer(r"^\S\s+(\d+)\s+\S.*\s(\d\.\d{4})\s", done, re.M)]
        assert ranks == ["1", "2", "3"], done
    finally:
        if app.client.process is not None:
            app.client.stop(save=None)


def test_gpt_app_starts_the_real_trainer_without_the_cli(tmp_path):
    """GPTApp(spec, out) with no client_factory, in a fresh process that never called prepare()."""
    script = f"""
import asyncio
from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.commands.cli import main
from tui_gpt.engine.session import RunSpec

async def main():
    spec = RunSpec(sources=["fables"], n_layer=1, n_embd=16, n_head=2, block_size=8)
    app = GPTApp(spec, out={str(tmp_path / "out")!r})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.2)
            print("ALIVE", app.client.alive)
    finally:
        app.client.stop(save=None)

if __name__ == "__main__":
    asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ALIVE True" in done.stdout
