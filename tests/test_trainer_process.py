"""The trainer process never outlives the app, even when the app is killed outright."""

import os
import signal
import subprocess
import sys
import time

CHILD = """
import sys, time
from tui_gpt.client import TrainerClient
from tui_gpt.session import RunSpec
if __name__ == "__main__":
    spec = RunSpec(n_layer=1, n_head=2, n_embd=32, block_size=16, train={"eval_interval": 0, "batch_size": 4})
    client = TrainerClient(lambda ev: None)
    client.start(spec)
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
        trainer = int(app.stdout.readline())
        time.sleep(3)  # let it load and train
        assert _alive(trainer)
        os.kill(app.pid, signal.SIGKILL)
        app.wait(5)
        deadline = time.monotonic() + 10
        while _alive(trainer) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(trainer), "the trainer process outlived the killed app"
    finally:
        app.kill()
