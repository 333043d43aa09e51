"""Gradient accumulation and torchrun: N ranks, or N micro-batches, take the step one big batch takes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from tui_gpt.commands.cli import main
from tui_gpt.engine import distributed
from tui_gpt.engine.checkpoint import load_model, read_config_json
from tui_gpt.engine.corpus import load_corpus
from tui_gpt.engine.dataset import TokenData, get_batch
from tui_gpt.engine.distributed import Dist
from tui_gpt.engine.session import RunSpec, open_run
from tui_gpt.errors import TuiGptError

STEPS = 5
OPTS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2"]
OPTS += ["--dtype", "float32", "--device", "cpu", "--eval-interval", "2", "--eval-iters", "2", "--threads", "1"]
# What torchrun sets for the one process of --nproc_per_node=1.
ONE_PROCESS = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
ONE_PROCESS |= {"MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}
RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tui_gpt.engine import distributed
    from tui_gpt.engine.session import RunSpec, open_run

    d = distributed.setup("cpu")
    trainer = open_run(RunSpec.from_dict(json.loads(sys.argv[1]))).trainer
    losses = [trainer.train_step().loss for _ in range(int(sys.argv[2]))]
    if d.main:
        print("LOSSES " + json.dumps(losses))
    distributed.leave(0)
    """
)


def losses(spec: RunSpec, steps: int = STEPS) -> list[float]:
    trainer = open_run(spec).trainer
    return [trainer.train_step().loss for _ in range(steps)]


def torchrun_command(tmp_path, *args: str, nproc: int = 2) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUI_GPT_CACHE": str(tmp_path / "cache")}
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args], env


def torchrun(tmp_path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd, env = torchrun_command(tmp_path, *args, nproc=nproc)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_grad_accum_matches_one_big_batch(make_spec):
    big = losses(make_spec(batch_size=8))
    accum = losses(make_spec(batch_size=4, grad_accum=2))
    assert accum == pytest.approx(big, abs=1e-4)
    assert big[-1] < big[0]  # it did train


def test_two_ranks_match_one_process(tmp_path, make_spec):
    """Rank r's rows are a slice of the global batch, and DDP averages the gradients."""
    one = losses(make_spec(batch_size=8))
    spec = make_spec(batch_size=2, grad_accum=2)
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    r = torchrun(tmp_path, str(script), json.dumps(spec.to_dict()), str(STEPS))
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("LOSSES ")]
    two = json.loads(line.removeprefix("LOSSES "))
    assert two == pytest.approx(one, abs=1e-4)


def test_a_checkpoint_from_two_ranks_resumes_on_one_and_back(tmp_path, tiny_file, capsys):
    ck = tmp_path / "ck"
    r = torchrun(tmp_path, "-m", "tui_gpt", "train", str(tiny_file), "--steps", "2", "--out", str(ck), *OPTS)
    assert r.stdout.strip().splitlines() == [str(ck)]  # rank 0 alone prints and saves
    assert "2 ranks" in r.stderr
    assert json.loads((ck / "trainer.json").read_text())["step"] == 2
    assert main(["train", "--resume", str(ck), "--steps", "2", *OPTS]) == 0  # one process
    assert json.loads((ck / "trainer.json").read_text())["step"] == 4
    torchrun(tmp_path, "-m", "tui_gpt", "train", "--resume", str(ck), "--steps", "1", *OPTS)
    assert json.loads((ck / "trainer.json").read_text())["step"] == 5
    assert read_config_json(ck)["train"]["batch_size"] == 2


@pytest.fixture
def launch_env(monkeypatch):
    """Set exactly these launch variables (the tests may themselves run under a launcher)."""

    def set_env(env: dict[str, str]) -> None:
        for name in (*distributed.TORCHRUN_VARS, "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize(
    "env, want",
    [
        ({}, None),
        ({"MASTER_ADDR": "host", "MASTER_PORT": "29500"}, None),  # often set globally: not a launch
        (ONE_PROCESS, Dist(0, 1, 0, 1)),
        ({**ONE_PROCESS, "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}, Dist(5, 8, 1, 4)),
        ({k: v for k, v in ONE_PROCESS.items() if k != "LOCAL_WORLD_SIZE"}, Dist(0, 1, 0, 1)),
    ],
)
def test_torchrun_environment(launch_env, env, want):
    launch_env(env)
    assert distributed.environment() == want
    assert distributed.launched() == (want is not None and want.world > 1)


@pytest.mark.parametrize(
    "env, names",
    [
        ({"RANK": "1"}, ["RANK set", "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"]),  # a stray variable
        ({"LOCAL_RANK": "0"}, ["LOCAL_RANK set", "RANK, WORLD_SIZE"]),
        ({k: v for k, v in ONE_PROCESS.items() if k != "MASTER_PORT"}, ["but not MASTER_PORT"]),
        ({**ONE_PROCESS, "WORLD_SIZE": "abc"}, ["WORLD_SIZE='abc'"]),
        ({**ONE_PROCESS, "RANK": "-1"}, ["RANK='-1'"]),
        ({**ONE_PROCESS, "WORLD_SIZE": "1_0"}, ["WORLD_SIZE='1_0'"]),
        ({**ONE_PROCESS, "WORLD_SIZE": "0"}, ["WORLD_SIZE=0"]),
        ({**ONE_PROCESS, "RANK": "2", "WORLD_SIZE": "2"}, ["RANK=2 is not below WORLD_SIZE=2"]),
        ({**ONE_PROCESS, "LOCAL_RANK": "1"}, ["LOCAL_RANK=1"]),
        ({**ONE_PROCESS, "LOCAL_WORLD_SIZE": "3"}, ["LOCAL_WORLD_SIZE=3"]),
        ({**ONE_PROCESS, "MASTER_PORT": "70000"}, ["MASTER_PORT=70000"]),
    ],
)
def test_a_partial_or_malformed_torchrun_environment_is_one_line(launch_env, one_line_error, env, names):
    launch_env(env)
    with pytest.raises(TuiGptError) as exc:
        distributed.environment()
    for name in names:
        one_line_error(exc.value, name)


@pytest.mark.parametrize(
    "env, name",
    [
        ({"RANK": "1"}, "RANK"),  # the case: it trained, printed the path, and saved nothing
        ({**ONE_PROCESS, "WORLD_SIZE": "abc"}, "WORLD_SIZE"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "MASTER_ADDR"),
    ],
)
def test_train_refuses_a_stray_or_broken_launch_before_any_work(tmp_path, tiny_file, capsys, launch_env, env, name):
    launch_env(env)
    out = tmp_path / "r1"
    assert main(["train", str(tiny_file), "--steps", "2", "--out", str(out), *OPTS]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no path: nothing was saved
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("tui-gpt: error: torchrun environment: ") and name in line
    assert not out.exists()


def test_torchruns_one_process_environment_trains_and_saves(tmp_path, tiny_file, capsys, launch_env):
    launch_env(ONE_PROCESS)
    out = tmp_path / "r1"
    assert main(["train", str(tiny_file), "--steps", "2", "--out", str(out), *OPTS]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert json.loads((out / "trainer.json").read_text())["step"] == 2


# ---- a rank lost mid-run -------------------------------------------------------------------------

LOSE_AT = 20
# `tui-gpt train` on every rank; rank 1 is lost as it starts step LOSE_AT + 1: killed, or (with
# LOSE=hold) hung, for the test to kill. Every rank writes its pid to pid.RANK first.
LOSER = textwrap.dedent(
    f"""
    import os, signal, sys, time
    from tui_gpt.commands.cli import main
    from tui_gpt.engine.trainer import Trainer

    open(f"pid.{{os.environ['RANK']}}", "w").write(str(os.getpid()))
    step = Trainer.train_step

    def train_step(self):
        if self.dist.rank == 1 and self.step == {LOSE_AT}:
            if os.environ["LOSE"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            open("held", "w").close()
            time.sleep(600)
        return step(self)

    Trainer.train_step = train_step
    sys.exit(main(sys.argv[1:]))
    """
)


def _sigterm_pending(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        masks = re.findall(r"^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$", f.read(), re.M)
    return any(int(mask, 16) >> (signal.SIGTERM - 1) & 1 for mask in masks)


def _wait(what, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["kill", "hold"], ids=["killed", "sigterm-first"])
def test_a_lost_rank_is_one_line_and_rank_0_saves_the_steps_since_the_last_save(tmp_path, tiny_file, how):
    """The issue's case: rank 1 dies mid-run. Rank 0's collective fails at once, and torchrun sends it
    SIGTERM a moment later; either way it saves its weights, without a collective, and says why.

    sigterm-first holds rank 0 stopped until torchrun's SIGTERM waits for it, so the signal comes
    first: rank 0 stops at the collective that fails or, if it was between two steps, at the signal.
    """
    if how == "hold" and not os.path.exists("/proc/self/status"):
        pytest.skip("sees a pending signal in /proc")
    ck, logs = tmp_path / "ck", tmp_path / "logs"
    script = tmp_path / "lose.py"
    script.write_text(LOSER)
    # One evaluation and save, at step 0, then none: the steps after it are lost unless rank 0 saves them.
    train = [str(script), "train", str(tiny_file), "--steps", "1000", "--out", str(ck), *OPTS]
    train += ["--eval-interval", "1000", "--autosave", "3600"]
    cmd, env = torchrun_command(tmp_path, "--log-dir", str(logs), "--redirects", "3", *train)
    env |= {"LOSE": how, "COLUMNS": "300"}  # rank 0 writes to a file: lines as wide as they come
    with open(tmp_path / "torchrun.err", "w+") as err:
        agent = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            if how == "hold":
                _wait(lambda: (tmp_path / "held").exists())
                rank0, rank1 = (int((tmp_path / f"pid.{rank}").read_text()) for rank in (0, 1))
                time.sleep(0.2)  # rank 0 waits in the collective of the next step
                os.kill(rank0, signal.SIGSTOP)
                os.kill(rank1, signal.SIGKILL)
                _wait(lambda: _sigterm_pending(rank0))  # torchrun saw rank 1 die
                os.kill(rank0, signal.SIGCONT)
            agent.wait(timeout=90)
        finally:
            if agent.poll() is None:  # failed midway: stop its workers too, the held one sleeps for minutes
                for pid in tmp_path.glob("pid.*"):
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid.read_text()), signal.SIGKILL)
                agent.kill()
        err.seek(0)
        agent_err = err.read()
    assert agent.returncode != 0
    (rank0_err,) = logs.glob("*/attempt_0/0/stderr.log")
    text = rank0_err.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert json.loads((ck / "trainer.json").read_text())["step"] == LOSE_AT, text[-3000:]
    lost = rf"tui-gpt: error: rank 1 of 2 is gone \(Connection (closed|reset) by peer\); saved step {LOSE_AT} to "
    last = [line for line in text.splitlines() if line.strip()][-1]
    if re.fullmatch(lost + re.escape(str(ck)), last):
        code = 2
    else:  # the signal came between two steps, before a collective could fail
        assert how == "hold" and last.startswith(f"stopped by SIGTERM; saved step {LOSE_AT} to {ck} ("), text[-3000:]
        code = 128 + signal.SIGTERM
    # torchrun's SIGTERM while rank 0 saves, or after, does not kill it: it exits by itself.
    assert re.search(rf"rank\s*: 0 \(local_rank: 0\)\s*exitcode\s*: {code} ", agent_err), agent_err[-2000:]
    _, tok, _ = load_model(ck)
    assert not list(tmp_path.glob(".ck.*"))
    # The failed step left no trace: the batch stream is where LOSE_AT whole steps leave it.
    train = TokenData.build(load_corpus([str(tiny_file)]), tok).train
    gen = torch.Generator().manual_seed(read_config_json(ck)["train"]["seed"])
    for _ in range(LOSE_AT):
        get_batch(train, 2 * 2, 16, gen)  # both ranks' rows of the global batch
    assert torch.equal(load_file(ck / "optimizer.safetensors")["rng.batches"], gen.get_state())


def test_a_hung_rank_times_out_and_rank_0_saves_naming_it(tmp_path, tiny_file):
    """Rank 1 hangs (it stops answering, but stays alive): rank 0's collective gives up after --dist-timeout,
    rank 0 saves the steps since the last save and says which rank stopped answering, instead of waiting
    gloo's default half hour."""
    ck, logs = tmp_path / "ck", tmp_path / "logs"
    script = tmp_path / "lose.py"
    script.write_text(LOSER)
    train = [str(script), "train", str(tiny_file), "--steps", "1000", "--out", str(ck), *OPTS]
    train += ["--eval-interval", "1000", "--autosave", "3600", "--dist-timeout", "3"]
    cmd, env = torchrun_command(tmp_path, "--log-dir", str(logs), "--redirects", "3", *train)
    env |= {"LOSE": "hang", "COLUMNS": "300"}
    agent = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agent.wait(timeout=90)  # without a timeout, 30 minutes
    finally:
        if agent.poll() is None:
            for pid in tmp_path.glob("pid.*"):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid.read_text()), signal.SIGKILL)
            agent.kill()
    (rank0_err,) = logs.glob("*/attempt_0/0/stderr.log")
    text = rank0_err.read_text()
    assert "Traceback" not in text, text[-3000:]
    last = [line for line in text.splitlines() if line.strip()][-1]
    hung = "tui-gpt: error: rank 1 of 2 stopped answering (nothing for 3 s, --dist-timeout)"
    assert last == f"{hung}; saved step {LOSE_AT} to {ck}", last
    assert json.loads((ck / "trainer.json").read_text())["step"] == LOSE_AT


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9"])
def test_a_bad_dist_timeout_is_refused(value, capsys):
    with pytest.raises(SystemExit):
        main(["train", "fables", "--dist-timeout", value])
    assert "--dist-timeout" in capsys.readouterr().err
