"""Overfitting on purpose (#26, goal 7): one bundled fable alone as a built-in text ("fables/01"), a real
tiny run on it that learns it by heart (train falls far below val), and the hint that says so."""

from __future__ import annotations

import math

import pytest
import torch

from tui_gpt.engine.corpus import load_corpus
from tui_gpt.engine.session import open_run
from tui_gpt.errors import TuiGptError
from tui_gpt.probes.hints import MEMORIZED_GAP, run_hints
from tui_gpt.settings import RunSpec, is_builtin

STEPS, EVERY = 100, 25


def one_fable_spec(**over) -> RunSpec:
    """The app's tokenizer (bpe) on a tiny model, no dropout, a constant lr: seeded, float32, CPU."""
    train = {
        "seed": 0,
        "dtype": "float32",
        "device": "cpu",
        "batch_size": 8,
        "lr": 1e-2,
        "warmup_steps": 10,
        "schedule": "constant",
        "eval_interval": EVERY,
        "eval_iters": 4,
    }
    spec = dict(sources=["fables/01"], tokenizer="bpe", n_layer=2, n_head=2, n_embd=64, block_size=32, dropout=0.0)
    return RunSpec(**{**spec, "train": train, **over})


@pytest.fixture(scope="module")
def overfit_run():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = open_run(one_fable_spec())
        for _ in run.trainer.run(steps=STEPS):
            pass
    finally:
        torch.set_num_threads(threads)
    return run


def test_one_fable_is_a_built_in_text_of_its_own():
    assert is_builtin("fables/01") and is_builtin("fables/28") and is_builtin("fables")
    assert not is_builtin("fables/1") and not is_builtin("fables/ab") and not is_builtin("fables/")
    corpus = load_corpus(["fables/01"])
    assert [d.name for d in corpus.documents] == ["fables/01-the-fox-and-the-dog.txt"]
    assert corpus.name == "one fable (the fox and the dog)"
    assert corpus.texts == [load_corpus(["fables"]).texts[0]]


def test_a_fable_that_is_not_there_is_one_line():
    with pytest.raises(TuiGptError) as err:
        load_corpus(["fables/99"])
    assert str(err.value) == "fables/99: no such fable; the bundled fables are fables/01 to fables/32"
    with pytest.raises(TuiGptError, match="cannot be mixed with files"):
        load_corpus(["fables/01", "fables"])


def test_a_tiny_run_on_one_fable_learns_it_by_heart(overfit_run):
    h = overfit_run.trainer.history
    assert len(h.eval_val) == STEPS // EVERY + 1  # step 0 and every EVERY steps
    train, val = h.eval_train, h.eval_val
    assert train[-1] < train[0] - 3, f"train falls: {train}"
    assert val[-1] > min(val) + 0.5, f"val rises past its best: {val}"
    assert val[-1] - train[-1] > MEMORIZED_GAP + 2, f"train far below val: {train} vs {val}"


def test_the_hint_says_what_happened(overfit_run):
    run = overfit_run
    history = run.trainer.history.to_dict()
    baselines = {"uniform": math.log(run.tokenizer.vocab_size)}
    tokens = len(run.data.train)
    assert 500 < tokens < 1000  # "one fable is ~700 tokens", with the app's bpe tokenizer
    hints = run_hints(history, baselines, small_text=("one fable", tokens))
    memo = [h for h in hints if h.kind == "memorized"]
    assert len(memo) == 1 and memo[0].severity == "warn"
    text = memo[0].text
    train, val = run.trainer.history.eval_train[-1], run.trainer.history.eval_val[-1]
    assert text.startswith(f"one fable is ~{tokens} tokens: the model has learned it by heart (train {train:.2f})")
    assert f"cannot guess a new sentence (val {val:.2f}); this is overfitting" in text
    assert "more text, dropout, or a smaller model help" in text
    assert all(h.kind != "memorized" for h in run_hints(history, baselines)), "only when asked"


def test_before_train_parts_from_val_the_hint_says_what_to_watch():
    history = {"steps": [1, 2], "loss": [6.0, 5.9], "eval_steps": [0], "eval_train": [6.2], "eval_val": [6.2]}
    hints = run_hints(history, {"uniform": 6.24}, small_text=("one fable", 873))
    assert [h.kind for h in hints] == ["memorizing"]
    assert hints[0].text.startswith("one fable is only ~873 tokens, too little to learn a language from")


def test_a_run_on_one_fable_resumes_without_naming_its_text(overfit_run, tmp_path):
    saved = overfit_run.save(tmp_path / "ckpt")
    again = open_run(RunSpec(resume=str(saved), train={"device": "cpu", "dtype": "float32"}))
    assert again.spec.sources == ["fables/01"] and again.trainer.step == STEPS
