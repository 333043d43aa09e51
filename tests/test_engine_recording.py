"""Every run is recorded: train, bench and the app's trainer report to the registry through one Recorder."""

from __future__ import annotations

import queue
import sys
import threading

import pytest
from polling import until_step

from tui_gpt.engine.session import open_run
from tui_gpt.errors import TuiGptError
from tui_gpt.link.protocol import Failed, Quit
from tui_gpt.link.worker import TrainerLoop
from tui_gpt.runs.recorder import Recorder, Recording
from tui_gpt.runs.registry import Registry
from tui_gpt.settings import TrainConfig

TINY = ["--n-layer", "1", "--n-head", "1", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-iters", "2", "--dtype", "float32", "--threads", "1"]  # fmt: skip


def tui_gpt(*args: str, cwd, data, monkeypatch) -> int:
    """The command, in this process (torch is loaded already): its exit status."""
    from tui_gpt.commands.cli import main

    monkeypatch.setenv("TUI_GPT_DATA", str(data))
    monkeypatch.chdir(cwd)
    return main(list(args))


def test_train_records_its_run(tmp_path, monkeypatch):
    data = tmp_path / "data"
    code = tui_gpt("train", *TINY, "--steps", "10", "--eval-interval", "5", "--out", "ckpt", cwd=tmp_path, data=data,
                   monkeypatch=monkeypatch)  # fmt: skip
    assert code == 0
    with Registry(data / "runs.sqlite") as reg:
        (run,) = reg.runs()
    assert (run.status, run.info.kind, run.info.tokenizer) == ("done", "train", "char")
    assert run.info.text_name.startswith("stories (bundled")  # the default text
    assert [e.step for e in run.evals] == [0, 5, 10]
    assert run.evals[1].tokens == 5 * 4 * 16 and run.evals[-1].val_bpb is not None
    assert run.end is not None and run.end.step == 10 and run.end.checkpoint == str(tmp_path / "ckpt")
    assert run.info.settings["train"]["lr"] == TrainConfig().lr and "threads" not in run.info.settings["train"]
    assert run.info.reproduce.startswith("tui-gpt train --tokenizer char --n-layer 1")


def test_no_record_and_its_environment_variable_turn_the_registry_off(monkeypatch):
    from tui_gpt.commands.cli import parser_train

    assert Recording.from_args(parser_train().parse_args([])).record
    assert not Recording.from_args(parser_train().parse_args(["--no-record"])).record
    monkeypatch.setenv("TUI_GPT_NO_RECORD", "1")
    assert not Recording.from_args(parser_train().parse_args([])).record


def test_bench_records_its_measurements(tmp_path, monkeypatch):
    data = tmp_path / "data"
    code = tui_gpt("bench", *TINY, "--steps", "6", "--eval-interval", "3", cwd=tmp_path, data=data,
                   monkeypatch=monkeypatch)  # fmt: skip
    assert code == 0
    with Registry(data / "runs.sqlite") as reg:
        (run,) = reg.runs()
    assert (run.status, run.info.kind, [e.step for e in run.evals]) == ("done", "bench", [0, 3, 6])
    assert run.end is not None and {"mfu", "full_val", "ms_per_step"} <= set(run.end.extra)


def test_a_corrupt_registry_stops_train_before_it_loads_in_one_line(tmp_path, monkeypatch, capsys):
    from tui_gpt.commands.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "runs.sqlite").write_text("not a database")
    monkeypatch.setenv("TUI_GPT_DATA", str(data))
    monkeypatch.setattr("tui_gpt.commands.subcommands._open", lambda spec: pytest.fail("loaded the text"))
    assert main(["train", *TINY, "--steps", "2", "--out", str(tmp_path / "ckpt")]) == 2
    why = "is not an SQLite database, so not a tui-gpt run registry; the run registry is left as it is"
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"tui-gpt: error: {data / 'runs.sqlite'}: {why} (move it away, or set TUI_GPT_DATA)"]
    assert (data / "runs.sqlite").read_text() == "not a database"


def test_the_app_trainer_records_each_run_until_the_app_quits(make_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path))
    commands, events = queue.Queue(), queue.Queue()
    loop = TrainerLoop(make_spec(eval_interval=5), commands, events, recording=Recording())
    thread = threading.Thread(target=loop.loop, daemon=True)
    thread.start()
    seen: list = []
    until_step(events, seen, 12)
    commands.put(Quit(None))
    thread.join(20)
    with Registry() as reg:
        (run,) = reg.runs()
    assert (run.status, run.info.kind) == ("stopped", "app")
    assert [e.step for e in run.evals][:3] == [0, 5, 10]
    assert not [ev for ev in seen if isinstance(ev, Failed)]


def test_the_app_trainer_keeps_the_best_weights_and_records_their_step(make_spec, tmp_path, monkeypatch):
    """--keep best in the app: each new best goes to RUN/best as it trains; the quit's save keeps best/ beside
    the last weights; the registry's end and trainer.json name the best step; the quit note says where it is."""
    from tui_gpt.commands.launch import best_note
    from tui_gpt.engine.savedir import best_val

    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    commands, events = queue.Queue(), queue.Queue()
    loop = TrainerLoop(make_spec(eval_interval=5, keep="best"), commands, events, out=str(out), recording=Recording())
    thread = threading.Thread(target=loop.loop, daemon=True)
    thread.start()
    seen: list = []
    until_step(events, seen, 12)
    assert (out / "best" / "model.safetensors").is_file(), "kept while training, before any save of the run"
    commands.put(Quit(str(out)))
    thread.join(20)
    assert not [ev for ev in seen if isinstance(ev, Failed)]
    best = loop.opened.trainer.history.best_val()
    assert best is not None and best_val(out / "best") == best == best_val(out)
    with Registry() as reg:
        (run,) = reg.runs()
    assert run.end is not None and (run.end.extra["best_val_step"], run.end.extra["best_val"]) == best
    note = best_note(out)
    assert note is not None and f"best val {best[1]:.4f} at step {best[0]}" in note and str(out / "best") in note
    assert best_note(tmp_path / "nowhere") is None


class Broken:
    def start(self, run):
        pass

    def eval(self, row):
        raise OSError(28, "No space left on device")

    def finish(self, end):
        raise AssertionError("a dropped sink is not called again")


def test_a_sink_failing_mid_run_warns_once_and_the_run_goes_on(make_spec, monkeypatch, tmp_path):
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path))
    monkeypatch.setattr(Recording, "sinks", lambda self, info: [Broken()])
    warnings: list[str] = []
    run = open_run(make_spec(eval_interval=5))
    with Recorder.start("train", run, Recording(), warn=warnings.append) as recorder:
        steps = [ev.step for ev in recorder.watch(run.trainer.run(steps=10))]
    assert steps[-1] == 10
    assert warnings == ["stopped recording to Broken: [Errno 28] No space left on device"]


def test_log_refuses_unknown_kinds_and_a_missing_writer_in_one_line(monkeypatch):
    from tui_gpt.commands.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--log", "wandb"])  # argparse's usage error
    assert exc.value.code == 2
    monkeypatch.setitem(sys.modules, "tui_gpt.runs.logsinks", None)  # as if it were not installed
    with pytest.raises(TuiGptError, match="--log"):
        Recording(record=False, log=("tensorboard",)).sinks(None)  # type: ignore[arg-type]
