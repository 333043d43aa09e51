"""Gradient accumulation and torchrun: N ranks, or N micro-batches, take the step one big batch takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tui_gpt.checkpoint import read_config
from tui_gpt.cli import main
from tui_gpt.session import RunSpec, open_run

STEPS = 5
RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tui_gpt import distributed
    from tui_gpt.session import RunSpec, open_run

    d = distributed.setup("cpu")
    trainer = open_run(RunSpec.from_dict(json.loads(sys.argv[1]))).trainer
    losses = [trainer.train_step().loss for _ in range(int(sys.argv[2]))]
    if d.main:
        print("LOSSES " + json.dumps(losses))
    distributed.teardown()
    """
)


def losses(spec: RunSpec, steps: int = STEPS) -> list[float]:
    trainer = open_run(spec).trainer
    return [trainer.train_step().loss for _ in range(steps)]


def torchrun(tmp_path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUI_GPT_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
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
    opts = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2"]
    opts += ["--dtype", "float32", "--device", "cpu", "--eval-interval", "2", "--eval-iters", "2"]
    ck = tmp_path / "ck"
    r = torchrun(tmp_path, "-m", "tui_gpt", "train", str(tiny_file), "--steps", "2", "--out", str(ck), *opts)
    assert r.stdout.strip().splitlines() == [str(ck)]  # rank 0 alone prints and saves
    assert "2 ranks" in r.stderr
    assert json.loads((ck / "trainer.json").read_text())["step"] == 2
    assert main(["train", "--resume", str(ck), "--steps", "2", *opts]) == 0  # one process
    assert json.loads((ck / "trainer.json").read_text())["step"] == 4
    torchrun(tmp_path, "-m", "tui_gpt", "train", "--resume", str(ck), "--steps", "1", *opts)
    assert json.loads((ck / "trainer.json").read_text())["step"] == 5
    assert read_config(ck)["train"]["batch_size"] == 2
