"""A run folder is owned (#25): a reset never writes into the checkpoint it left, `runs rm` deletes only
the checkpoint its run wrote, a sweep never writes over another sweep's, and an unused folder goes."""

from __future__ import annotations

import queue
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from pilot import sync
from polling import wait
from test_engine_cli import TINY
from test_engine_sweep import TINY as SWEEP_TINY
from test_engine_sweep import finished

from tui_gpt.commands.cli import main
from tui_gpt.engine.savedir import LOCK, CheckpointLock, checkpoint_run_id
from tui_gpt.errors import TuiGptError
from tui_gpt.link.protocol import Moved, Quit, Ready, Reset, Save, Saved
from tui_gpt.link.worker import TrainerLoop
from tui_gpt.runs.registry import Registry, RegistrySink
from tui_gpt.runs.tracking import RunEnd, RunInfo


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("TUI_GPT_DATA", str(folder))
    monkeypatch.setenv("COLUMNS", "200")
    return folder


def train(out: Path, *more: str) -> None:
    assert main(["train", *TINY, "--steps", "2", "--out", str(out), *more]) == 0


def only_run() -> int:
    with Registry() as reg:
        return max(r.id for r in reg.runs())


# ---- row 17: a folder that never got a checkpoint is removed; a refused start leaves nothing -----------


def test_a_lock_released_before_any_save_leaves_no_folder_or_lock(tmp_path):
    new, existing = tmp_path / "a" / "new", tmp_path / "existing"
    existing.mkdir()
    for folder in (new, existing):
        with CheckpointLock(folder):
            assert (folder / LOCK).is_file()
    assert not (tmp_path / "a").exists()  # the folders it made are gone
    assert existing.is_dir() and not list(existing.iterdir())  # the user's empty folder stays, empty


def test_a_refused_train_start_leaves_no_folder(tmp_path, data, monkeypatch, capsys):
    def refuse(spec):
        raise TuiGptError("no such device")

    monkeypatch.setattr("tui_gpt.commands.subcommands._open", refuse)
    out = tmp_path / "out"
    assert main(["train", *TINY, "--steps", "2", "--out", str(out)]) == 2
    assert "no such device" in capsys.readouterr().err
    assert not out.exists()


# ---- rows 5, 6, 7: runs rm --with-checkpoints deletes only the checkpoint its run wrote ------------------


def test_a_checkpoint_carries_its_run_id_and_the_record_the_same(tmp_path, data):
    train(tmp_path / "x")
    with Registry() as reg:
        (run,) = reg.runs()
    assert run.info.run_id and checkpoint_run_id(tmp_path / "x") == run.info.run_id
    assert run.info.checkpoint == str((tmp_path / "x").resolve())


def test_rm_keeps_a_checkpoint_another_run_wrote_over(tmp_path, data, capsys):
    x = tmp_path / "x"
    train(x)
    first = only_run()
    train(x, "--no-record")  # another run, not recorded, writes over x
    before = checkpoint_run_id(x)
    assert main(["runs", "rm", str(first), "--with-checkpoints"]) == 0
    assert f"run {first}: kept {x}: another run saved there since" in capsys.readouterr().err
    assert checkpoint_run_id(x) == before


def test_rm_never_follows_a_symlinked_parent(tmp_path, data, capsys):
    parent, other = tmp_path / "parent", tmp_path / "Other"
    train(parent / "ck")
    run = only_run()
    parent.rename(other)  # the very checkpoint, now under Other, reached through a symlink
    parent.symlink_to(other)
    assert main(["runs", "rm", str(run), "--with-checkpoints"]) == 0
    err = capsys.readouterr().err
    assert f"run {run}: kept {parent / 'ck'}: it leads to {other / 'ck'}" in err
    assert (other / "ck" / "model.safetensors").is_file()


def test_rm_refuses_a_relative_path_from_an_old_record(tmp_path, data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train(Path("myrun"))
    shutil.copytree("myrun", "elsewhere")
    with Registry() as reg:
        sink = RegistrySink(reg)  # as an older tui-gpt recorded it: a relative path
        sink.start(RunInfo("app", {}, "char", "fables", "d", "tui-gpt", "myrun"))
        sink.finish(RunEnd("stopped", 2, 1.0, 1.0, "myrun"))
        old = sink.id
    assert main(["runs", "rm", str(old), "--with-checkpoints"]) == 0
    assert f"run {old}: kept myrun: recorded as a relative path" in capsys.readouterr().err
    assert Path("myrun", "model.safetensors").is_file()


def test_the_app_trainer_records_an_absolute_folder(make_spec, tmp_path, data, monkeypatch):
    from tui_gpt.engine.session import open_run
    from tui_gpt.runs.recorder import Recording, run_info

    monkeypatch.chdir(tmp_path)
    info = run_info("app", open_run(make_spec()), Recording(), "myrun")
    assert info.checkpoint == str(tmp_path.resolve() / "myrun")


def test_rm_removes_its_own_checkpoint(tmp_path, data, capsys):
    train(tmp_path / "x")
    run = only_run()
    assert main(["runs", "rm", str(run), "--with-checkpoints"]) == 0
    assert f"run {run}: removed checkpoint {tmp_path / 'x'}" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---- row 8: a sweep never writes over another sweep's folders ----------------------------------------


def test_a_second_sweep_into_the_same_folder_keeps_the_first_ones_checkpoints(tmp_path):
    data = tmp_path / "data"
    grid = ["sweep", "--lr", "1e-3,2e-3", "--jobs", "2", "--eval-interval", "2", *SWEEP_TINY, "--out", "S"]
    code, _, err = finished(*grid, "--steps", "2", cwd=tmp_path, data=data)
    assert code == 0, err
    with Registry(data / "runs.sqlite") as reg:
        first = {r.id: (r.end.checkpoint, checkpoint_run_id(Path(r.end.checkpoint))) for r in reg.runs() if r.end}
    assert len(first) == 2 and all(ident for _, ident in first.values())
    code, _, err = finished(*grid, "--steps", "4", cwd=tmp_path, data=data)
    assert code == 0, err
    for folder, ident in first.values():
        assert checkpoint_run_id(Path(folder)) == ident  # still the first sweep's runs
    assert "Traceback" not in err


def test_a_sweep_refuses_a_checkpoint_folder_as_its_out(tmp_path, data, capsys):
    train(tmp_path / "ck")
    capsys.readouterr()
    assert main(["sweep", "--lr", "1e-3,2e-3", *SWEEP_TINY, "--steps", "2", "--out", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "ck") in err and "checkpoint" in err and len(err.strip().splitlines()) == 1


# ---- row 4: a reset after --resume never writes into the resumed folder ---------------------------------


def _events_until(events: queue.Queue, seen: list, want) -> None:
    def found() -> bool:
        while not events.empty():
            seen.append(events.get())
        return any(want(ev) for ev in seen)

    wait("the trainer's event", found, timeout=60)


def test_a_reset_of_a_resumed_run_saves_beside_the_checkpoint_it_resumed(make_spec, tmp_path, data):
    r100 = tmp_path / "R100"
    train(r100)
    before = {p.name: p.read_bytes() for p in r100.iterdir()}
    spec = replace(make_spec(), resume=str(r100))
    commands: queue.Queue = queue.Queue()
    events: queue.Queue = queue.Queue()
    loop = TrainerLoop(spec, commands, events, out=str(r100))
    with CheckpointLock(r100):
        thread = threading.Thread(target=loop.loop, daemon=True)
        thread.start()
        seen: list = []
        _events_until(events, seen, lambda ev: isinstance(ev, Ready))
        commands.put(Reset(replace(spec, resume=None)))
        _events_until(events, seen, lambda ev: isinstance(ev, Moved))
        commands.put(Quit(str(r100)))  # as an app that has not yet heard of the move would
        thread.join(60)
        loop.release()
    while not events.empty():
        seen.append(events.get())
    (moved,) = [ev for ev in seen if isinstance(ev, Moved)]
    assert (moved.kept, moved.out) == (str(r100.resolve()), str((tmp_path / "R100-2").resolve()))
    assert {p.name: p.read_bytes() for p in r100.iterdir()} == before  # untouched
    (saved,) = [ev for ev in seen if isinstance(ev, Saved)]
    assert saved.path == moved.out and (tmp_path / "R100-2" / "model.safetensors").is_file()
    assert checkpoint_run_id(tmp_path / "R100-2") != checkpoint_run_id(r100)


@sync
async def test_the_app_asks_with_the_folder_and_follows_the_move(tmp_path):
    from fake_trainer import make_app
    from pilot import ready, settle, wait_for
    from test_app_pilot import asked

    async with ready(make_app(tmp_path)) as (app, pilot):
        out = Path(app.state.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")  # the folder holds a checkpoint (a resumed run's, say)
        app.action_reset_model()
        question = await asked(pilot)
        assert "keeps its checkpoint" in question and "new folder" in question
        await pilot.press("n")
        await settle(pilot)
        app.client._emit(Moved(str(tmp_path / "run-2"), str(out)))  # as the trainer says after a reset
        await wait_for(pilot, lambda: app.state.out == str(tmp_path / "run-2"), what="the new folder")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.client.commands[-1] == Save(str(tmp_path / "run-2"))
