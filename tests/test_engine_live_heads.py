"""Head scores live in the trainer (#28): every `head_interval` steps, on the event, in the history, saved."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tui_gpt.engine.checkpoint import load_trainer
from tui_gpt.engine.heads import head_scores, in_context_score, make_probe, val_windows
from tui_gpt.engine.session import open_run
from tui_gpt.settings import in_context_positions, in_context_words

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
    assert in_context_positions(1024) == (500, 50)  # Olsson et al.'s, where the context reaches them
    assert in_context_positions(501) == (500, 50)
    assert in_context_positions(500) == (499, 50)
    assert in_context_positions(64) == (63, 6)  # the last position and a tenth of the way in
    assert in_context_positions(16) == (15, 1)
    assert in_context_positions(1) is None
    assert "token 500 minus at token 50 (Olsson" in in_context_words(1024)
    assert "token 63 minus at token 6" in in_context_words(64) and "shorter" in in_context_words(64)
    assert "too short" in in_context_words(1)


def test_the_in_context_score_is_the_late_loss_minus_the_early_one(trained):
    model, _, data = trained  # a tiny char model, block 32, trained a little on the fables
    windows = val_windows(data.val, 32)
    assert windows is not None and windows.shape == (32, 33)
    value, words = in_context_score(model, windows)
    assert words == in_context_words(32) and "token 31 minus at token 3" in words
    with torch.no_grad():
        logits, _, _ = model(windows[:, :-1])
    nll = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")
    assert value == pytest.approx(float(nll[:, 31].mean() - nll[:, 3].mean()), abs=1e-5)
    assert value < 0  # trained on text: a longer context predicts better
    # windows fixed and spread over the split; a split shorter than a context gives shorter windows
    assert torch.equal(windows, val_windows(data.val, 32))
    assert val_windows(data.val[:10], 32).shape == (1, 10)
    assert val_windows(data.val[:1], 32) is None
    assert in_context_score(model, None)[0] is None


def test_a_context_too_short_for_the_probe_reads_nothing(make_spec):
    run = open_run(make_spec(n_layer=1, n_head=2, n_embd=16, block_size=8, head_interval=1))
    assert all(ev.heads is None for ev in run.trainer.run(steps=2))
    assert math.isfinite(run.trainer.history.loss[-1])
