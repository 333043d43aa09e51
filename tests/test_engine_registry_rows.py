"""Issue #25, rows 12, 13 and 19-24: the registry's own bad rows, stale runs, a sweep's size, `runs`'
options and table, terminal-safe names and samples, bench's sentence, and each parser's own defaults."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import time

import pytest

from tui_gpt.commands.cli import main, parser_app, parser_sweep, parser_train
from tui_gpt.runs.registry import Registry, RegistrySink
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo

ESC = "\x1b"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    with Registry() as reg:
        yield reg


def _record(reg: Registry, lr: float = 1e-3, seed: int = 1, name: str = "fables", checkpoint: str = "") -> int:
    sink = RegistrySink(reg)
    settings = {"tokenizer": "char", "n_layer": 1, "n_head": 1, "n_embd": 16, "train": {"lr": lr, "seed": seed}}
    sink.start(RunInfo("train", settings, "char", name, "d", "tui-gpt train", checkpoint or None))
    sink.eval(EvalRow(10, 100, 1.0, 2.1, 2.0, 1.0))
    sink.finish(RunEnd("done", 10, 1.0, 1000.0, checkpoint or None))
    assert sink.id is not None
    return sink.id


def _raw_row(reg: Registry, info: str, status: str = "done", pid: int | None = None, host: str | None = None,
             started: object = None, finish: str | None = None) -> int:  # fmt: skip
    db = sqlite3.connect(reg.path)
    cur = db.execute(
        "INSERT INTO runs (started, status, kind, text_digest, info, finish, pid, host) "
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (time.time() if started is None else started, status, "train", "d", info, finish, pid, host),
    )
    db.commit()
    db.close()
    assert cur.lastrowid is not None
    return cur.lastrowid


# ---- row 12: the registry's own bad rows are shown as damaged, and removable -----------------------


def test_damaged_rows_are_listed_as_damaged_and_removable(registry, capsys):
    good = _record(registry)
    deep = "[" * 100_000 + "]" * 100_000
    bad = [
        _raw_row(registry, "{not json"),
        _raw_row(registry, deep),
        _raw_row(registry, json.dumps([1, 2])),  # JSON, but not a run
        _raw_row(registry, json.dumps({"kind": 5, "settings": "x"})),  # a run's fields of the wrong types
        _raw_row(registry, json.dumps(RunInfo("train", {}, "char", "t", "d", "r").to_dict()), started="yesterday"),
        _raw_row(registry, json.dumps(RunInfo("train", {}, "char", "t", "d", "r").to_dict()), finish=deep),
    ]
    db = sqlite3.connect(registry.path)  # an evaluation that is not JSON: its run is damaged
    db.execute("INSERT INTO evals (run, step, row) VALUES (?, ?, ?)", (good, 20, "{nope"))
    db.commit()
    db.close()
    assert main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and out.count("damaged") >= len(bad) + 1
    assert main(["runs", "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(listed) == {good, *bad}
    assert all(listed[i]["damaged"] for i in [good, *bad])
    assert listed[good]["evals"] and listed[good]["info"]["text_name"] == "fables"  # what could be read is kept
    assert main(["runs", "rm", *map(str, bad)]) == 0
    assert f"removed runs {', '.join(map(str, bad))}" in capsys.readouterr().err
    assert [r.id for r in registry.runs(damaged=True)] == [good]
    assert main(["runs", "rm", str(good), "--with-checkpoints"]) == 0
    assert registry.runs(damaged=True) == []


def test_readers_other_than_runs_never_see_a_damaged_row(registry):
    good = _record(registry)
    _raw_row(registry, "{not json")
    assert [r.id for r in registry.runs()] == [good]  # the app's overlays and sweep's skip-list: whole runs only


# ---- row 13: stale "running" rows: --force ----------------------------------------------------------


def test_runs_rm_refuses_a_running_row_but_says_force_and_force_removes_it(registry, capsys):
    info = json.dumps(RunInfo("train", {}, "char", "t", "d", "r").to_dict())
    here = _raw_row(registry, info, status="running", pid=1, host=socket.gethostname())  # alive, not ours
    there = _raw_row(registry, info, status="running", pid=123, host="another-machine")
    assert main(["runs", "rm", str(here)]) == 2
    err = capsys.readouterr().err
    assert "still running" in err and f"tui-gpt runs rm --force {here}" in err and len(err.splitlines()) == 1
    assert main(["runs", "rm", str(there)]) == 2
    err = capsys.readouterr().err
    assert "another-machine" in err and "--force" in err
    assert main(["runs", "rm", "--force", str(here), str(there)]) == 0
    assert registry.runs(damaged=True) == []


def test_a_running_row_whose_pid_now_belongs_to_a_newer_process_shows_as_killed(registry, capsys):
    info = json.dumps(RunInfo("train", {}, "char", "t", "d", "r").to_dict())
    week_ago = time.time() - 7 * 86400  # this test's process started after: it reused the run's pid
    reused = _raw_row(registry, info, status="running", pid=os.getpid(), host=socket.gethostname(), started=week_ago)
    (run,) = registry.runs(ids=[reused])
    assert run.status == "killed"
    assert main(["runs", "rm", str(reused)]) == 0  # no --force needed: it is not running


# ---- row 19: a sweep's size is capped ------------------------------------------------------------


def test_a_huge_sweep_grid_is_refused_in_one_line_before_anything_starts(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lrs = ",".join(f"{i}e-4" for i in range(1, 101))
    seeds = ",".join(str(i) for i in range(100))
    assert main(["sweep", "--lr", lrs, "--seed", seeds]) == 2
    err = capsys.readouterr().err
    assert "10,000 runs" in err and "--max-runs" in err and len(err.splitlines()) == 1
    assert main(["sweep", "--lr", "1e-3,2e-3", "--seeds", "1000000000000"]) == 2  # counted, never listed
    assert "--max-runs" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists() and registry.runs(damaged=True) == []
    with pytest.raises(SystemExit):
        parser_sweep().parse_args(["--max-runs", "0"])
    from tui_gpt.runs.sweep import grid

    assert len(grid(parser_sweep().parse_args(["--lr", lrs, "--seed", seeds, "--max-runs", "10000"]))) == 10_000


# ---- row 20: --limit is checked ------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_runs_limit_must_be_positive(registry, capsys, limit):
    _record(registry)
    with pytest.raises(SystemExit) as exc:
        main(["runs", "--limit", limit])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--limit" in err and "Traceback" not in err


# ---- row 21: user text never reaches the terminal as control codes ---------------------------------


def test_names_in_runs_table_and_json_and_errors_show_control_characters(registry, capsys):
    _record(registry, name=f"{ESC}[2Jevil[/]\x07", checkpoint=f"/tmp/{ESC}]0;title\x07")
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert ESC not in out and "\x07" not in out and "\\x1b[2Jevil[/]" in out
    from tui_gpt.errors import TuiGptError, report

    report(TuiGptError(f"no such file: {ESC}[2J.txt\nsecond line"))
    err = capsys.readouterr().err
    assert ESC not in err and err.count("\n") == 1 and "\\x1b[2J.txt" in err


def test_sweep_names_and_a_failed_runs_last_line_are_shown_escaped(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from tui_gpt.runs import sweep

    monkeypatch.setattr(sweep, "done_runs", lambda points, digest: {})
    monkeypatch.setattr(sweep.Sweep, "run", lambda self, todo, plan: None)
    assert main(["sweep", "--name", f"{ESC}[2Jx", "--lr", "1e-3"]) == 0
    out, err = capsys.readouterr()
    assert ESC not in out + err and "\\x1b[2Jx" in err
    log = tmp_path / "log"
    log.write_text(f"boom {ESC}[2J\n")
    assert ESC not in sweep._last_line(log)


def test_generate_shows_control_characters_on_a_terminal_and_writes_them_raw_to_a_pipe(monkeypatch, capsys):
    from tui_gpt.commands import subcommands
    from tui_gpt.probes import predict

    class Tok:
        eot_id = 0

        def encode(self, text):
            return [1]

        def to_bytes(self, ids):
            return {1: b"a\n", 2: b"\x1b[2J", 3: b"\tz"}[ids[0]]

    monkeypatch.setattr(subcommands, "_load_model", lambda args: (None, Tok()))
    monkeypatch.setattr(predict, "sample", lambda *a: iter([1, 2, 3]))
    args = parser_generate_args(["ck", f"hi{ESC}[2J"])
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert subcommands.cmd_generate(args) == 0
    shown = capsys.readouterr().out
    assert ESC not in shown and shown == "hi\\x1b[2Ja\n\\x1b[2J\tz\n"  # newlines and tabs stay: it is text
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert subcommands.cmd_generate(parser_generate_args(["ck", "hi"])) == 0
    assert capsys.readouterr().out == f"hia\n{ESC}[2J\tz\n"  # a pipe gets the sample as it is


def parser_generate_args(argv: list[str]):
    from tui_gpt.commands.cli import parser_generate

    return parser_generate().parse_args(argv)


# ---- row 22: bench --seed-sentence says a correct sentence ----------------------------------------


def test_seed_sentence_bench_that_misses_says_so_in_a_sentence(monkeypatch, capsys):
    from rich.console import Console

    from tui_gpt.commands import learn_bench

    monkeypatch.setattr(learn_bench, "_seed_specs", lambda args, app=False: [object()])
    missed = learn_bench.SeedResult(7, None, None)
    monkeypatch.setattr(learn_bench, "seed_sentence_run", lambda spec, limit, every, say: missed)
    args = parser_bench_args(["--seed-sentence", "--time", "30"])
    assert learn_bench.bench_seed_sentence(args, Console(stderr=True, width=200)) == 0
    err = capsys.readouterr().err
    assert "goal at not" not in err and "within 120 s" not in err
    assert "seed 7: not met within 30 s" in err and "goal met in 0 of 1 seeds within 30 s" in err


def parser_bench_args(argv: list[str]):
    from tui_gpt.commands.cli import parser_bench

    return parser_bench().parse_args(argv)


# ---- row 23: the columns that differ never collapse ----------------------------------------------


@pytest.mark.parametrize("columns", ["80", "60", None])
def test_runs_table_keeps_what_differs_in_a_narrow_terminal_or_a_pipe(registry, capsys, monkeypatch, columns):
    if columns is None:
        monkeypatch.delenv("COLUMNS")  # piped: no width at all
    else:
        monkeypatch.setenv("COLUMNS", columns)
    long = "/tmp/" + "a-long-checkpoint-folder-name/" * 3
    for lr, seed in ((1e-3, 1), (2e-3, 2), (3e-3, 3)):
        _record(registry, lr, seed, name="some-text-file.txt", checkpoint=long + f"{seed}")
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    for label in ("lr 1e-3 seed 1", "lr 2e-3 seed 2", "lr 3e-3 seed 3"):
        assert label in out, out
    if columns is not None:
        assert max(len(line) for line in out.splitlines()) <= int(columns)
    else:
        assert long + "3" in out  # a pipe: nothing cut


# ---- row 24: each parser's own defaults ------------------------------------------------------------


def test_each_parser_says_its_own_tokenizer_default():
    def tokenizer_help(parser) -> str:
        (action,) = [a for a in parser._actions if "--tokenizer" in a.option_strings]
        return action.help

    assert "default bpe" in tokenizer_help(parser_app()) and "default char" not in tokenizer_help(parser_app())
    assert "default char" in tokenizer_help(parser_train()) and "default bpe" not in tokenizer_help(parser_train())
    assert "the app: bpe" not in parser_app().format_help()
