"""Head scores live in the trainer (#28): every `head_interval` steps, on the event, in the history, saved."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from tui_gpt.engine.checkpoint import load_trainer
from tui_gpt.engine.heads import head_scores, in_context_score, make_probe, val_windows
from tui_gpt.engine.session import open_run
from tui_gpt.errors import TuiGptError
from tui_gpt.settings import in_context_label, in_context_positions, in_context_words

HEADS = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16}


def test_the_trainer_reads_the_heads_at_exactly_the_configured_steps(make_spec):
    run = open_run(make_spec(**HEADS, head_interval=3, eval_interval=4))
    events = list(run.trainer.run(steps=10))
    read = [ev.step for ev in events if ev.heads is not None]
    assert read == [0, 3, 6, 9]  # step 0: with the evaluation before the first step
    for ev in events:
        if ev.heads is None:
            continue
        assert set(ev.heads) == {"previous_token", "induction", "icl", "in_context"}
        for name in ("previous_token", "induction"):
            table = ev.heads[name]
            assert len(table) == 2 and all(len(row) == 2 for row in table)
            assert all(isinstance(v, float) and 0 <= v <= 1 for row in table for v in row)
        assert isinstance(ev.heads["icl"], float) and isinstance(ev.heads["in_context"], float)
    history = run.trainer.history
    assert history.head_steps == read
    assert history.head_scores == [ev.heads for ev in events if ev.heads is not None]
    run.trainer.model.train()
    assert run.trainer.read_heads() is not None
    assert run.trainer.model.training  # a reading puts it back in training mode


def test_no_readings_at_interval_zero_and_none_without_the_evaluation_at_step_zero(make_spec):
    off = open_run(make_spec(**HEADS, head_interval=0, eval_interval=2))
    assert all(ev.heads is None for ev in off.trainer.run(steps=6))
    no_eval = open_run(make_spec(**HEADS, head_interval=2, eval_interval=0))
    assert [ev.step for ev in no_eval.trainer.run(steps=6) if ev.heads] == [2, 4, 6]


def test_the_readings_are_heads_own_scores_of_the_same_weights(make_spec):
    run = open_run(make_spec(**HEADS, head_interval=4))
    ev = list(run.trainer.run(steps=4))[-1]
    assert ev.step == 4 and ev.heads is not None
    model = run.trainer.model  # unchanged since the reading: it was the last step
    scores = head_scores(model, make_probe(run.tokenizer, 16, seed=0))
    assert ev.heads["previous_token"] == scores.previous_token.tolist()
    assert ev.heads["induction"] == scores.induction.tolist()
    assert ev.heads["icl"] == scores.icl
    value, _ = in_context_score(model, val_windows(run.data.val, 16))
    assert ev.heads["in_context"] == value


def test_readings_leave_training_as_it_was(make_spec):
    # dropout draws from torch's random state: each run opens (and seeds it) just before it trains
    plain = open_run(make_spec(**HEADS, head_interval=0, dropout=0.1))
    losses = [ev.loss for ev in plain.trainer.run(steps=8)]
    watched = open_run(make_spec(**HEADS, head_interval=2, dropout=0.1))
    assert [ev.loss for ev in watched.trainer.run(steps=8)] == losses
    assert watched.trainer.history.head_steps == [2, 4, 6, 8]


def test_readings_survive_a_save_and_a_resume(tmp_path, make_spec):
    run = open_run(make_spec(**HEADS, head_interval=2))
    list(run.trainer.run(steps=5))
    saved = run.save(tmp_path / "ck")
    back = load_trainer(saved, run.data, device="cpu")
    assert back.history.head_steps == [2, 4]
    assert back.history.head_scores == run.trainer.history.head_scores
    assert back.config.head_interval == 2


def test_the_in_context_positions_say_what_they_measure():
    olsson = (range(500, 501), range(50, 51))
    assert in_context_positions(1024) == in_context_positions(501) == olsson  # where the context reaches them
    assert in_context_positions(500) == (range(450, 500), range(25, 51))  # the last tenth, around a tenth in
    assert in_context_positions(64) == (range(58, 64), range(3, 7))
    assert in_context_positions(16) == (range(15, 16), range(0, 2))
    assert in_context_positions(3) == (range(2, 3), range(0, 2))
    assert in_context_positions(2) is None and in_context_positions(1) is None
    assert in_context_words(1024) == "in-context score: val loss at token 500 minus at token 50 (Olsson et al.)"
    assert in_context_words(64) == (
        "in-context score: mean val loss at tokens 58-63 minus at tokens 3-6 "
        "(a context of 64 is shorter than Olsson et al.'s 500 - 50)"
    )
    assert in_context_label(1024) == "500 vs 50" and in_context_label(64) == "58-63 vs 3-6"
    assert in_context_label(16) == "15 vs 0-1" and in_context_label(2) == ""
    assert "too short" in in_context_words(2)


def test_the_in_context_score_is_the_late_loss_minus_the_early_one(trained):
    model, _, data = trained  # a tiny char model, block 32, trained a little on the fables
    windows = val_windows(data.val, 32)
    assert windows is not None and windows.shape == (64, 33)  # IN_CONTEXT_WINDOWS
    value, words = in_context_score(model, windows)
    assert words == in_context_words(32) and "tokens 29-31 minus at tokens 1-3" in words
    with torch.no_grad():
        logits, _, _ = model(windows[:, :-1])
    nll = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")
    assert value == pytest.approx(float(nll[:, 29:32].mean() - nll[:, 1:4].mean()), abs=1e-5)
    # windows fixed and spread over the split; a split shorter than a context gives shorter windows
    assert torch.equal(windows, val_windows(data.val, 32))
    assert val_windows(data.val[:10], 32).shape == (1, 10)
    assert val_windows(data.val[:1], 32) is None
    assert in_context_score(model, None)[0] is None


def test_a_context_too_short_for_the_probe_reads_nothing(make_spec):
    run = open_run(make_spec(n_layer=1, n_head=2, n_embd=16, block_size=8, head_interval=1))
    assert all(ev.heads is None for ev in run.trainer.run(steps=2))
    assert math.isfinite(run.trainer.history.loss[-1])


def _edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


HOSTILE_HEADS = [
    lambda d: d.update(head_steps=5),
    lambda d: d.update(head_steps=[-1, 2]),
    lambda d: d.update(head_steps=d["head_steps"][:-1]),
    lambda d: d.update(head_scores={"induction": 1}),
    lambda d: d["head_scores"][0].update(induction=[[0.1, 0.2]]),  # one layer of two
    lambda d: d["head_scores"][0].update(induction=[[0.1, 0.2, 0.3]] * 2),  # three heads of two
    lambda d: d["head_scores"][0].update(previous_token=[["x", 0.2], [0.1, 0.2]]),
    lambda d: d["head_scores"][1]["induction"][0].__setitem__(0, float("nan")),
    lambda d: d["head_scores"][1].update(icl=float("inf")),
    lambda d: d["head_scores"][1].update(icl=True),
    lambda d: d["head_scores"][1].update(in_context="-1"),
    lambda d: d["head_scores"].__setitem__(0, [1, 2]),
    lambda d: d.update(head_steps=list(range(10_000)), head_scores=d["head_scores"] * 5_000),  # more than steps
]


@pytest.mark.parametrize("change", HOSTILE_HEADS)
def test_a_hostile_history_of_head_scores_is_refused_in_one_line(tmp_path, make_spec, change, one_line_error):
    run = open_run(make_spec(**HEADS, head_interval=2))
    list(run.trainer.run(steps=4))
    saved = run.save(tmp_path / "ck")
    _edit(saved / "history.json", change)
    with pytest.raises(TuiGptError) as info:
        load_trainer(saved, run.data, device="cpu")
    assert "head" in one_line_error(info.value, "history.json")


def test_a_resume_may_change_how_often_heads_are_read(tmp_path, make_spec):
    run = open_run(make_spec(**HEADS, head_interval=2))
    list(run.trainer.run(steps=4))
    saved = run.save(tmp_path / "ck")
    spec = make_spec(head_interval=3)
    spec.resume, spec.given = str(saved), ["head_interval"]
    again = open_run(spec)
    assert again.trainer.config.head_interval == 3 and again.trainer.history.changes[-1] == {
        "step": 4,
        "head_interval": 3,
    }
    assert [ev.step for ev in again.trainer.run(steps=3) if ev.heads] == [6]
    assert again.trainer.history.head_steps == [2, 4, 6]
