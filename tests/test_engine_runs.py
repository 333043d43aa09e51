"""The run registry: made on first use, shared by processes writing at once, never touching a file not its own."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tui_gpt.errors import TuiGptError
from tui_gpt.runs.registry import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Registry,
    RegistrySink,
    RunRecord,
    differences,
    labels,
    legend,
    registry_path,
    seed_groups,
)
from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo

ROOT = Path(__file__).resolve().parent.parent


def info(lr: float = 1e-3, seed: int = 1, digest: str = "d1", **over) -> RunInfo:
    settings = {"tokenizer": "char", "n_layer": 1, "train": {"lr": lr, "seed": seed, "decay_steps": 20}}
    return RunInfo(**{"kind": "train", "settings": settings, "tokenizer": "char", "text_name": "fables",
                      "text_digest": digest, "reproduce": "tui-gpt train", **over})  # fmt: skip


def record(registry: Registry, run: RunInfo, evals: int = 2, status: str | None = "done") -> int:
    sink = RegistrySink(registry)
    sink.start(run)
    for i in range(evals):
        sink.eval(EvalRow(step=10 * i, tokens=100 * i, wall_s=float(i), train=4.0 - i, val=4.1 - i, val_bpb=2.0 - i))
    if status:
        sink.finish(RunEnd(status, 10 * (evals - 1), float(evals), 123.0, checkpoint="out"))
    assert sink.id is not None
    return sink.id


def test_created_on_first_use_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    assert registry_path() == tmp_path / "data" / "runs.sqlite"
    monkeypatch.delenv("TUI_GPT_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert registry_path() == tmp_path / "xdg" / "tui-gpt" / "runs.sqlite"
    path = tmp_path / "a" / "b" / "runs.sqlite"
    with Registry(path) as reg:
        assert reg.runs() == []
        first = record(reg, info())
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with Registry(path) as reg:  # opened again: the same registry, kept
        (run,) = reg.runs()
    assert (run.id, run.status, run.info, len(run.evals)) == (first, "done", info(), 2)
    assert run.end == RunEnd("done", 10, 2.0, 123.0, checkpoint="out")
    assert run.final == EvalRow(10, 100, 1.0, 3.0, 4.1 - 1, 1.0)


def test_runs_newest_first_filtered_by_text_and_ids(tmp_path):
    with Registry(tmp_path / "r.sqlite") as reg:
        a = record(reg, info(digest="one"))
        b = record(reg, info(digest="two"))
        c = record(reg, info(digest="one"), status=None)
        assert [r.id for r in reg.runs()] == [c, b, a]
        assert [r.id for r in reg.runs(text_digest="one")] == [c, a]
        assert [r.id for r in reg.runs(ids=[a, b])] == [b, a]
        assert reg.runs(text_digest="two", ids=[a]) == []
        assert reg.runs(ids=[c])[0].status == "running"  # this process is alive
        assert reg.remove([a, 999]) == 1
        assert [r.id for r in reg.runs()] == [c, b]


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tui_gpt.runs.registry import Registry, RegistrySink
    from tui_gpt.runs.tracking import EvalRow, RunEnd, RunInfo
    reg = Registry(Path(sys.argv[1]))
    for i in range(int(sys.argv[2])):
        sink = RegistrySink(reg)
        sink.start(RunInfo("sweep", {"i": i}, "char", "fables", sys.argv[3], "tui-gpt train"))
        for step in range(3):
            sink.eval(EvalRow(step, step, 0.0, 1.0, 1.0))
        sink.finish(RunEnd("done", 3, 1.0, 1.0))
    """
)


def test_two_processes_writing_at_once_lose_no_row(tmp_path):
    path, n = tmp_path / "fresh" / "runs.sqlite", 40  # both create it too: neither may find it half made
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), who], env=env, stderr=subprocess.PIPE)
        for who in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    with Registry(path) as reg:
        runs = reg.runs()
    assert sorted(r.info.text_digest for r in runs) == ["a"] * n + ["b"] * n
    assert all(r.status == "done" and [e.step for e in r.evals] == [0, 1, 2] for r in runs)


def test_a_run_whose_process_died_shows_as_killed(tmp_path):
    path = tmp_path / "runs.sqlite"
    code = "import sys; from pathlib import Path; from tui_gpt.runs.registry import Registry; "
    code += "from tests.test_engine_runs import info; Registry(Path(sys.argv[1])).add(info())"
    subprocess.run([sys.executable, "-c", code, str(path)], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    with Registry(path) as reg:
        assert [r.status for r in reg.runs()] == ["killed"]


# ---- files that are not a registry ----------------------------------------------------------


def _foreign_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.execute("INSERT INTO notes VALUES ('mine')")
    db.commit()
    db.close()


def _corrupt_registry(path: Path) -> None:
    with Registry(path) as reg:
        for _ in range(20):
            record(reg, info())
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page after the header's is garbage
    path.write_bytes(bytes(data))


def _newer_registry(path: Path) -> None:
    Registry(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


BAD_FILES = {
    "text": (lambda p: p.write_text("my notes\n" * 100), "not an SQLite database"),
    "foreign sqlite": (_foreign_sqlite, "another program's SQLite database"),
    "corrupt": (_corrupt_registry, "corrupt"),
    "newer": (_newer_registry, "newer tui-gpt"),
    "read-only": (lambda p: (_foreign_sqlite(p), p.chmod(0o444)), "read-only"),
    "unreadable": (lambda p: (p.write_text("x"), p.chmod(0o200)), "cannot be read"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_file_that_is_not_a_registry_is_refused_in_one_line_and_left_as_it_was(tmp_path, kind, one_line_error):
    path = tmp_path / "runs.sqlite"
    make, why = BAD_FILES[kind]
    make(path)
    before, names = path.read_bytes() if os.access(path, os.R_OK) else None, sorted(os.listdir(tmp_path))
    mode = path.stat().st_mode
    with pytest.raises(TuiGptError) as exc, Registry(path) as reg:
        reg.runs()  # opening refuses it, or (corrupt past the header) the first read
    msg = one_line_error(exc.value, str(path))
    assert why in msg
    path.chmod(0o644)
    assert sorted(os.listdir(tmp_path)) == names, "left a file behind"
    assert before is None or path.read_bytes() == before
    assert path.stat().st_mode | 0o644 == mode | 0o644


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_fifo_is_refused(tmp_path, kind, one_line_error, no_hang):
    path = tmp_path / "runs.sqlite"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    with pytest.raises(TuiGptError) as exc:
        Registry(path)
    one_line_error(exc.value, str(path))
    assert sorted(os.listdir(tmp_path)) == ["runs.sqlite"]


# ---- what differs between runs ----------------------------------------------------------------


def _records(*infos: RunInfo) -> list[RunRecord]:
    return [RunRecord(i, 0.0, "done", run) for i, run in enumerate(infos)]


def test_legend_says_what_differs_and_seed_groups_gather_the_seeds():
    runs = _records(info(1e-3, 1), info(2e-3, 1), info(1e-3, 2), info(2e-3, 2))
    assert differences(runs) == {"lr": [1e-3, 2e-3, 1e-3, 2e-3], "seed": [1, 1, 2, 2]}
    assert legend(runs) == "lr 1e-3 vs 2e-3 · seed 1 vs 2"
    assert labels(runs)[1] == "lr 2e-3 seed 1"
    groups = seed_groups(runs)
    assert [[r.id for r in g] for g in groups] == [[0, 2], [1, 3]]
    assert legend(runs[:1]) == "" and legend(_records(info(), info())) == "same settings"
    other_text = _records(info(), info(digest="d2"))
    assert legend(other_text).startswith("text fables (d1") and len(seed_groups(other_text)) == 2
