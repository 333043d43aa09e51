"""`tui-gpt sweep` and `tui-gpt runs`: a grid trained as real processes, listed, rerun, stopped, and removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from polling import wait

from tui_gpt.engine.savedir import FORMAT
from tui_gpt.runs.registry import Registry, RegistrySink
from tui_gpt.runs.sweep import Child, Plan
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo

TINY = ["--n-layer", "1", "--n-head", "1", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-iters", "2", "--dtype", "float32"]  # fmt: skip
GRID = ["sweep", "--lr", "1e-3,2e-3", "--seeds", "2", "--steps", "10", "--eval-interval", "5", "--jobs", "2", *TINY]


def tui_gpt(*args: str, cwd: Path, data: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "TUI_GPT_DATA": str(data), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "tui_gpt", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen,
    )  # fmt: skip


def finished(*args: str, cwd: Path, data: Path) -> tuple[int, str, str]:
    proc = tui_gpt(*args, cwd=cwd, data=data)
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


def test_a_sweep_of_two_lrs_by_two_seeds_lists_four_runs_and_a_rerun_skips_them(tmp_path):
    data = tmp_path / "data"
    code, out, err = finished(*GRID, cwd=tmp_path, data=data)
    assert code == 0, err
    assert "Traceback" not in err and "ran " in err  # says how it ran them, and why
    code, listed, err = finished("runs", "--json", "--kind", "sweep", cwd=tmp_path, data=data)
    assert code == 0, err
    runs = json.loads(listed)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"done"}
    grid = {(r["info"]["settings"]["train"]["lr"], r["info"]["settings"]["train"]["seed"]) for r in runs}
    assert grid == {(1e-3, 1337), (1e-3, 1338), (2e-3, 1337), (2e-3, 1338)}
    assert all(Path(r["end"]["checkpoint"]).is_dir() and [e["step"] for e in r["evals"]] == [0, 5, 10] for r in runs)
    for lr in ("lr 1e-3", "lr 2e-3"):  # the table: one row per setting, both seeds
        (row,) = [line for line in out.splitlines() if lr in line]
        assert "2/2" in row and row.count("±") == 2
    code, again, err = finished(*GRID, cwd=tmp_path, data=data)
    assert code == 0, err
    assert "4 runs, 4 done already" in err.replace("\n", " ")
    assert again == out  # the same table from the same runs
    with Registry(data / "runs.sqlite") as reg:
        assert len(reg.runs()) == 4


def test_ctrl_c_stops_the_runs_which_save_and_prints_what_finished(tmp_path):
    data = tmp_path / "data"
    args = ["sweep", "--lr", "1e-3,2e-3", "--steps", "100000", "--eval-interval", "5", "--jobs", "1", *TINY]
    proc = tui_gpt(*args, cwd=tmp_path, data=data)
    try:

        def evaluated() -> bool:
            if not (data / "runs.sqlite").exists():
                return False
            with Registry(data / "runs.sqlite") as reg:
                return any(len(r.evals) >= 2 for r in reg.runs())

        wait("the first run's evaluations", evaluated, timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "stopped by SIGINT" in line] == [
        "sweep stopped by SIGINT: 0 of 2 runs done; the same command again runs the rest"
    ]
    assert "0/1" in out  # the table, of what finished
    with Registry(data / "runs.sqlite") as reg:
        (run,) = reg.runs()
    assert run.status == "stopped" and run.end is not None and Path(run.end.checkpoint or "").is_dir()


class Timed(Child):
    def __init__(self, began: float) -> None:  # no process: only when it began matters to a Plan
        self.began = began


def test_the_plan_times_one_alone_then_several_at_once_and_keeps_the_faster(monkeypatch):
    clock = iter([10.0, 12.0, 13.0, 14.0, 20.0])  # the lone run ends at 10 s; the four begun then, by 20 s
    monkeypatch.setattr("tui_gpt.runs.sweep.time.monotonic", lambda: next(clock))
    plan = Plan(cores=4, runs=6, jobs=None)
    assert (plan.room(0), plan.threads) == (1, 4)
    plan.launched()
    assert plan.room(1) == 0
    plan.finished(Timed(0.0), steps=100, ok=True)  # 10 steps/s alone
    assert (plan.room(0), plan.threads) == (4, 1)  # then four at once, a core each
    for _ in range(4):
        plan.launched()
    for _ in range(4):
        plan.finished(Timed(10.0), steps=100, ok=True)  # 400 steps in 10 s: 40 steps/s against 10
    assert plan.phase == "decided" and plan.width == 4 and "40.0 steps/s 4 at once" in plan.note
    assert Plan(cores=4, runs=2, jobs=None).note.startswith("one at a time with 4 threads (too few runs")
    assert Plan(cores=4, runs=9, jobs=2).threads == 2


# ---- tui-gpt runs, in this process ----------------------------------------------------------


RUN_ID = "0123456789abcdef"


def _record(reg: Registry, lr: float, checkpoint: Path | None, val: float) -> int:
    sink = RegistrySink(reg)
    settings = {"n_layer": 1, "n_head": 1, "n_embd": 16, "train": {"lr": lr, "seed": 1}}
    info = RunInfo("train", settings, "char", "tiny [x]", "d", "tui-gpt train", str(checkpoint or ""), run_id=RUN_ID)
    sink.start(info)
    sink.eval(EvalRow(10, 100, 1.0, val + 0.1, val, val / 2))
    sink.finish(RunEnd("done", 10, 1.0, 1000.0, str(checkpoint) if checkpoint else None))
    assert sink.id is not None
    return sink.id


def _checkpoint(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"format": FORMAT}))
    (path / "trainer.json").write_text(json.dumps({"run": RUN_ID}))  # the run that saved it (runs rm checks)
    return path


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    with Registry() as reg:
        yield reg


def test_runs_filters_sorts_and_shows_text_as_text(registry, tmp_path, capsys):
    from tui_gpt.commands.cli import main

    a, b = _record(registry, 1e-3, None, 2.0), _record(registry, 2e-3, None, 1.5)
    assert main(["runs", "--sort", "val", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [b, a]
    assert main(["runs", "--where", "lr=0.001", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [a]
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert "tiny [x]" in table and "lr 2e-3" in table and "1.5000" in table  # "[x]" is text, not markup
    assert main(["runs", "--where", "nope=1"]) == 2
    assert "--where nope: no recorded run has that setting" in capsys.readouterr().err


def test_runs_rm_removes_entries_and_only_tui_gpt_checkpoints(registry, tmp_path, capsys):
    from tui_gpt.commands.cli import main

    ours, shared, foreign = _checkpoint(tmp_path / "ours"), _checkpoint(tmp_path / "shared"), tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    plain = _record(registry, 1e-3, ours, 2.0)
    keep = _record(registry, 1e-3, ours, 2.0)
    gone = [_record(registry, 1e-3, shared, 2.0), _record(registry, 1e-3, foreign, 2.0)]
    assert main(["runs", "rm", str(plain)]) == 0 and ours.is_dir()  # an entry, never its checkpoint
    assert main(["runs", "rm", *map(str, gone), "--with-checkpoints"]) == 0
    err = capsys.readouterr().err
    assert f"run {gone[0]}: removed checkpoint {shared}" in err and not shared.exists()
    assert f"run {gone[1]}: kept {foreign}: not a tui-gpt checkpoint" in err and (foreign / "notes.txt").exists()
    _record(registry, 1e-3, ours, 2.0)
    assert main(["runs", "rm", str(keep), "--with-checkpoints"]) == 0
    assert "also saved there" in capsys.readouterr().err and ours.is_dir()
    assert main(["runs", "rm", "999"]) == 2
    assert "no run 999" in capsys.readouterr().err


def test_each_point_has_the_key_its_train_process_records():
    from tui_gpt.commands.cli import parser_sweep, parser_train
    from tui_gpt.runs.recorder import settings_of
    from tui_gpt.runs.registry import run_key
    from tui_gpt.runs.sweep import grid, key_of
    from tui_gpt.settings import RunSpec

    args = parser_sweep().parse_args(["--tokenizer", "bpe,char", "--lr", "3e-4", "--no-causal", "--seeds", "2"])
    points = grid(args)
    assert [p.label for p in points] == [
        "tokenizer bpe seed 1337", "tokenizer bpe seed 1338", "tokenizer char seed 1337", "tokenizer char seed 1338"
    ]  # fmt: skip
    for p in points:
        spec = RunSpec.from_args(parser_train().parse_args([*p.train_args(), "my.txt"]))
        assert key_of(p, ["my.txt"], "digest") == run_key(settings_of(spec), "digest")
    assert len({key_of(p, [], "digest") for p in points}) == 4
