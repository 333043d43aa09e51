"""Head readings and bits per byte where runs are kept (#28): the registry, `tui-gpt runs`, the CSV, the app's curve."""

from __future__ import annotations

import csv
import io
import json
import math
import queue
import re
import sqlite3
import threading

import pytest
from polling import until_step

from tui_gpt.app.widgets.curve import Curve
from tui_gpt.engine.session import open_run
from tui_gpt.link.protocol import Losses, Quit, Ready
from tui_gpt.link.worker import TrainerLoop
from tui_gpt.probes.export import HISTORY_COLUMNS, history_csv
from tui_gpt.runs.listing import _cells
from tui_gpt.runs.recorder import Recording
from tui_gpt.runs.registry import Registry, run_key
from tui_gpt.runs.tracking import EvalRow, RunInfo, best_head

TINY = ["--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-iters", "2", "--dtype", "float32", "--threads", "1", "fables"]  # fmt: skip
HEADS = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16}


def test_train_prints_a_head_line_and_records_the_readings(tmp_path, monkeypatch, capsys):
    from tui_gpt.commands.cli import main

    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    args = ["--steps", "8", "--eval-interval", "4", "--head-interval", "3", "--out", "ckpt"]
    assert main(["train", *TINY, *args]) == 0
    err = " ".join(capsys.readouterr().err.split())  # as one line: the console wraps at its width
    assert "heads read every 3 steps; in-context score: mean val loss at token 15 minus at tokens 0-1" in err
    lines = re.findall(r"heads step (\d+): best induction L\d\.H\d [\d.]+, prev-token L\d\.H\d [\d.]+, "
                       r"icl [-+][\d.]+ nats, in-context \(15 vs 0-1\) [-+][\d.]+ nats", err)  # fmt: skip
    assert lines == ["0", "3", "6"]
    with Registry(tmp_path / "data" / "runs.sqlite") as reg:
        (run,) = reg.runs()
    assert [(e.step, e.heads_step) for e in run.evals] == [(0, 0), (4, 3), (8, 6)]  # the latest at or before
    last = run.evals[-1]
    assert last.induction is not None and 0 <= last.induction <= 1 and last.induction_head.startswith("L")
    assert last.previous_token is not None and last.previous_token_head.startswith("L")
    assert math.isfinite(last.icl) and math.isfinite(last.in_context) and last.val_bpb > 0
    cells = _cells(run, "")
    assert cells["induction"] == f"{last.induction:.2f} {last.induction_head}" and cells["bpb"]


def test_the_row_of_a_reading_names_the_best_heads():
    row = EvalRow(step=10, tokens=0, wall_s=1.0, train=2.0, val=2.1)
    heads = {"previous_token": [[0.1, 0.9], [0.3, 0.2]], "induction": [[0.05, 0.1], [0.61, 0.2]], "icl": -1.1}
    row.add_heads(8, {**heads, "in_context": None})
    assert (row.heads_step, row.induction, row.induction_head) == (8, 0.61, "L2.H1")
    assert (row.previous_token, row.previous_token_head, row.icl, row.in_context) == (0.9, "L1.H2", -1.1, None)
    assert best_head([[0.5, 0.5]]) == ("L1.H1", 0.5)  # the first of equals, as probes.phase.best_head


def test_a_registry_row_with_a_head_field_of_the_wrong_type_is_damaged(tmp_path):
    with Registry(tmp_path / "runs.sqlite") as reg:
        run = reg.add(RunInfo("train", {}, "char", "t", "d", "r"))
        row = EvalRow(step=1, tokens=0, wall_s=1.0, train=2.0, val=2.1)
        reg.add_eval(run, row)
        db = sqlite3.connect(reg.path)
        db.execute(
            "INSERT INTO evals (run, step, row) VALUES (?, ?, ?)",
            (run, 2, json.dumps({**vars(row), "heads_step": "x"})),
        )
        db.commit()
        db.close()
        (record,) = reg.runs(damaged=True)
    assert "heads_step is a str" in record.damaged


def test_how_often_heads_are_read_is_not_what_a_run_is():
    settings = {"n_layer": 2, "train": {"lr": 1e-3, "head_interval": 100}}
    assert run_key(settings, "d") == run_key({"n_layer": 2, "train": {"lr": 1e-3}}, "d")  # runs recorded before #28
    assert run_key(settings, "d") == run_key({"n_layer": 2, "train": {"lr": 1e-3, "head_interval": 0}}, "d")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_has_bits_per_byte_and_the_head_readings(make_spec):
    run = open_run(make_spec(**HEADS, head_interval=3, eval_interval=4))
    list(run.trainer.run(steps=6))
    history = run.trainer.history.to_dict()
    text = history_csv(history)
    assert text.splitlines()[0] == ",".join(HISTORY_COLUMNS)
    assert HISTORY_COLUMNS[:5] == ("step", "train_loss", "lr", "val_loss", "eval_train_loss")  # as before #28
    rows = {int(r["step"]): r for r in _rows(text)}
    assert sorted(rows) == list(range(7))
    bpt = history["val_bytes_per_token"]
    for step, val in zip(history["eval_steps"], history["eval_val"], strict=True):
        assert float(rows[step]["val_bpb"]) == pytest.approx(val / math.log(2) / bpt)
        assert float(rows[step]["val_bpb"]) == pytest.approx(run.trainer.bits_per_byte(val))
    assert [s for s, r in rows.items() if r["best_induction"]] == [0, 3, 6]
    for step, heads in zip(history["head_steps"], history["head_scores"], strict=True):
        row = rows[step]
        flat = [(s, li, hi) for li, layer in enumerate(heads["induction"]) for hi, s in enumerate(layer)]
        score, li, hi = max(flat, key=lambda t: t[0])
        assert float(row["best_induction"]) == score and row["best_induction_head"] == f"L{li + 1}.H{hi + 1}"
        assert float(row["best_previous_token"]) == max(max(layer) for layer in heads["previous_token"])
        assert float(row["icl"]) == heads["icl"] and float(row["in_context"]) == heads["in_context"]
    assert rows[1]["best_induction"] == rows[1]["val_bpb"] == ""  # neither a reading nor an evaluation


def test_the_apps_curve_keeps_the_readings_like_the_history(make_spec):
    run = open_run(make_spec(**HEADS, head_interval=2, eval_interval=3))
    curve = Curve()
    curve.set_history(run.trainer.history.to_dict())  # as the Ready event brings it: empty, with the bytes per token
    events = [vars(ev).copy() for ev in run.trainer.run(steps=5)]
    curve.add(events[:3])
    curve.add(events[3:])
    history = run.trainer.history.to_dict()
    assert curve.head_steps == history["head_steps"] == [0, 2, 4]
    assert curve.head_scores == history["head_scores"]
    again = Curve()
    again.set_history(history)  # a resumed run's Ready carries its history
    assert again.head_steps == [0, 2, 4] and again.history()["head_scores"] == history["head_scores"]
    assert history_csv(curve.history()) == history_csv(history)  # ctrl+s writes the same CSV as the run's history


def test_the_apps_trainer_sends_the_readings_with_the_losses_and_records_them(make_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path))
    commands, events = queue.Queue(), queue.Queue()
    loop = TrainerLoop(make_spec(**HEADS, eval_interval=4, head_interval=4), commands, events, recording=Recording())
    thread = threading.Thread(target=loop.loop, daemon=True)
    thread.start()
    seen: list = []
    until_step(events, seen, 8)
    commands.put(Quit(None))
    thread.join(20)
    sent = [ev for batch in seen if isinstance(batch, Losses) for ev in batch.events]
    read = [ev for ev in sent if ev["heads"] is not None]
    assert [ev["step"] for ev in read][:3] == [0, 4, 8]
    assert all(len(ev["heads"]["induction"]) == 2 for ev in read)
    ready = next(ev for ev in seen if isinstance(ev, Ready))
    assert ready.history["head_steps"] == []  # a fresh run's history: the app's curve starts with none
    with Registry() as reg:
        (run,) = reg.runs()
    assert [(e.step, e.heads_step) for e in run.evals][:3] == [(0, 0), (4, 4), (8, 8)]
    assert run.evals[2].induction == max(max(row) for row in read[2]["heads"]["induction"])
