"""Saving never destroys what tui-gpt did not write: foreign folders and files are refused, orphans tidied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_engine_cli import TINY, tui_gpt

from tui_gpt.checkpoint import FILES, load_model
from tui_gpt.errors import TuiGptError
from tui_gpt.savedir import LOCK, check_out


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
