"""Saving never destroys what tui-gpt did not write: foreign folders and files are refused, orphans tidied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_engine_cli import TINY, tui_gpt

from tui_gpt.commands.cli import main
from tui_gpt.engine.checkpoint import FILES, load_model
from tui_gpt.engine.savedir import LOCK, CheckpointLock, check_out, discard_unsaved
from tui_gpt.errors import TuiGptError


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def foreign(tmp_path) -> Path:
    """A user's folder of their own files."""
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("my notes\n")
    (d / "sub" / "thesis.tex").write_text("\\chapter{One}\n")
    return d


def test_a_folder_of_other_files_is_refused_and_left_alone(fables_run, foreign, one_line_error):
    before = tree(foreign)
    with pytest.raises(TuiGptError) as exc:
        fables_run.save(foreign)
    one_line_error(exc.value, str(foreign))
    assert tree(foreign) == before
    assert sorted(os.listdir(foreign.parent)) == ["mine"]  # no temp or .old folder either


def test_a_checkpoint_with_a_stray_file_in_it_is_refused(tmp_path, fables_run):
    out = fables_run.save(tmp_path / "ck")
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(TuiGptError, match="not a tui-gpt checkpoint"):
        fables_run.save(out)
    assert (out / "notes.txt").read_text() == "mine\n"


def test_a_file_is_refused_and_left_alone(tmp_path, fables_run, one_line_error):
    f = tmp_path / "report.pdf"
    f.write_bytes(b"%PDF-1.7 precious")
    with pytest.raises(TuiGptError) as exc:
        fables_run.save(f)
    one_line_error(exc.value, str(f))
    assert f.read_bytes() == b"%PDF-1.7 precious"
    assert os.listdir(tmp_path) == ["report.pdf"]


def test_a_symlink_is_refused(tmp_path, foreign):
    link = tmp_path / "link"
    link.symlink_to(foreign)
    with pytest.raises(TuiGptError, match="not a folder"):
        check_out(link)


def test_a_foreign_folder_in_the_aside_place_is_refused(tmp_path, foreign):
    foreign.rename(tmp_path / ".ck.old")
    with pytest.raises(TuiGptError, match="in the way"):
        check_out(tmp_path / "ck")


def test_an_empty_folder_and_a_new_one_are_accepted(tmp_path, fables_run):
    (tmp_path / "empty").mkdir()
    for name in ("empty", "new/deeper"):
        out = fables_run.save(tmp_path / name)
        assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, LOCK])
        load_model(out)


def test_the_next_save_removes_orphans_of_killed_saves(tmp_path, fables_run):
    out = fables_run.save(tmp_path / "ck")
    orphan = tmp_path / ".ck.tmp-killed"
    orphan.mkdir()
    (orphan / "model.safetensors").write_bytes(b"half")
    not_ours = tmp_path / ".ck.tmp-other"
    not_ours.mkdir()
    (not_ours / "diary.txt").write_text("keep\n")
    fables_run.save(out)
    assert sorted(os.listdir(tmp_path)) == [".ck.tmp-other", "ck"]
    assert (not_ours / "diary.txt").read_text() == "keep\n"


def test_a_folder_no_run_saved_into_is_discarded_and_any_other_kept(tmp_path, foreign):
    empty, lock_only, held = tmp_path / "empty", tmp_path / "lock-only", tmp_path / "held"
    empty.mkdir()
    lock_only.mkdir()
    (lock_only / LOCK).write_text("{}")  # a run killed before its first save leaves its lock
    assert discard_unsaved(empty) and discard_unsaved(lock_only)
    assert not empty.exists() and not lock_only.exists()
    with CheckpointLock(held):  # a run still going, about to save: kept
        assert not discard_unsaved(held)
        assert (held / LOCK).is_file()
    assert not discard_unsaved(foreign) and (foreign / "notes.txt").is_file()
    assert not discard_unsaved(tmp_path / "missing")


@pytest.mark.parametrize("where", ["folder", "dot", "file"])
def test_train_refuses_a_foreign_out_before_training(tmp_path, foreign, where):
    if where == "file":
        target, cwd = foreign / "notes.txt", tmp_path
    elif where == "dot":
        target, cwd = Path("."), foreign
    else:
        target, cwd = foreign, tmp_path
    before = tree(foreign)
    r = tui_gpt("train", "fables", "--steps", "5", *TINY, "--out", str(target), cwd=cwd)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("tui-gpt: error:")]
    assert len(errors) == 1 and "training" not in r.stderr, r.stderr
    assert tree(foreign) == before


def test_the_app_refuses_a_foreign_out_before_it_opens(tmp_path, foreign):
    before = tree(foreign)
    r = tui_gpt("--out", str(foreign), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("tui-gpt: error:") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "not a tui-gpt checkpoint" in r.stderr
    assert tree(foreign) == before


# ---- export reads a checkpoint under its lock, and never writes into one --------------------------
HOLD_LOCK = "import sys\nfrom tui_gpt.engine.savedir import CheckpointLock\nwith CheckpointLock(sys.argv[1]):\n"
HOLD_LOCK += "    print('locked', flush=True)\n    sys.stdin.read()"


def ours(ck: Path) -> dict[str, bytes]:
    """The checkpoint's files but its lock, whose text names the latest holder."""
    return {name: data for name, data in tree(ck).items() if name != LOCK}


def test_export_of_a_checkpoint_another_process_writes_is_one_line_and_writes_nothing(tmp_path, fables_run, capsys):
    ck = fables_run.save(tmp_path / "run")
    before = ours(ck)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(ck)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main(["export", str(ck), str(tmp_path / "hf")]) == 2
    finally:
        holder.communicate(timeout=60)  # its stdin closes: it lets go of the lock
    err = capsys.readouterr().err
    assert err.startswith("tui-gpt: error: ") and len(err.splitlines()) == 1, err
    assert f"in use by pid {holder.pid}" in err
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no OUT, no .hf.export-* temp folder
    assert ours(ck) == before
    assert main(["export", str(ck), str(tmp_path / "hf")]) == 0  # once it is free
    assert CheckpointLock.held(ck) is None  # and export let go of it
    fables_run.save(ck)


@pytest.mark.parametrize(
    "where, says",
    [
        ("run/hf", "inside the checkpoint"),
        ("run/a/b", "inside the checkpoint"),
        ("run", "is or holds the checkpoint"),
        (".", "is or holds the checkpoint"),
        ("other/hf", "inside the checkpoint"),
        ("fresh/hf", "inside the checkpoint"),  # a run that holds its folder and has not saved yet
    ],
)
def test_export_never_writes_in_or_over_a_checkpoint(tmp_path, fables_run, capsys, monkeypatch, where, says):
    ck = fables_run.save(tmp_path / "run")
    fables_run.save(tmp_path / "other")
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / LOCK).write_text("{}")
    before = tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(ck), where]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tui-gpt: error: ") and len(err.splitlines()) == 1 and says in err, err
    assert tree(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["fresh", "other", "run"]
    fables_run.save(ck)  # the run still saves
    load_model(ck)


def test_export_reads_a_checkpoint_no_save_can_write_without_its_lock(tmp_path, fables_run, capsys):
    ck = fables_run.save(tmp_path / "run")
    (ck / "hf").mkdir()  # what an export into the checkpoint left before: every save there is refused
    assert main(["export", str(ck), str(tmp_path / "hf")]) == 0
    assert main(["export", str(tmp_path / "gone"), str(tmp_path / "hf2")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "gone").exists()  # taking a lock would have created it
