"""Probing a trained model: per-example losses, next-token guesses, sampling, count baselines."""

from __future__ import annotations

import math

import pytest
import torch

from tui_gpt.engine.corpus import load_corpus
from tui_gpt.engine.dataset import TokenData
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.predict import analyze, baselines, context, examples, predict, sample

PROMPT = "The fox ran to the river and the"


@pytest.mark.parametrize("text", [PROMPT, PROMPT * 3], ids=["shorter-than-block", "longer-than-block"])
def test_examples_mean_nll_is_the_model_loss(trained, text):
    model, tok, _ = trained
    ids = tok.encode(text)
    rows, mean = examples(model, tok, ids)
    window = ids[-model.config.block_size :]  # what the model sees
    assert len(rows) == len(window) - 1
    with torch.no_grad():
        _, loss, _ = model(torch.tensor([window[:-1]]), torch.tensor([window[1:]]))
    assert abs(mean - loss.item()) < 1e-5
    assert abs(sum(r.nll for r in rows) / len(rows) - loss.item()) < 1e-5
    assert [r.target for r in rows] == window[1:]
    assert [r.position for r in rows] == list(range(1, len(window)))
    for r in rows:
        assert r.rank >= 1
        assert r.nll >= 0
        assert math.isclose(r.prob, math.exp(-r.nll), rel_tol=1e-9)
    assert any(r.rank == 1 for r in rows)  # a trained model gets some characters right


def test_examples_rank_agrees_with_predict(trained):
    model, tok, _ = trained
    ids = tok.encode(PROMPT)
    rows, _ = examples(model, tok, ids)
    last = rows[-1]
    pred = predict(model, tok, ids[:-1], k=tok.vocab_size, attention=False)
    order = [g.id for g in pred.guesses]
    assert order.index(last.target) + 1 == last.rank
    assert math.isclose(pred.guesses[last.rank - 1].prob, last.prob, rel_tol=1e-5)


def test_analyze_is_predict_and_examples_in_one_pass(trained):
    model, tok, _ = trained
    ids = tok.encode(PROMPT)
    a = analyze(model, tok, ids, k=4, attention=False)
    rows, mean = examples(model, tok, ids)
    assert a.examples == rows and a.loss == mean
    assert a.prediction == predict(model, tok, ids, k=4, attention=False)
    b = analyze(model, tok, ids, k=4)  # the attention path: same maths, up to rounding
    p = predict(model, tok, ids, k=4)
    assert b.prediction.ids == p.ids and b.prediction.guesses == p.guesses
    assert torch.equal(b.prediction.attention, p.attention)
    assert b.loss == pytest.approx(mean, abs=1e-5)


def test_examples_of_too_little_text(trained):
    model, tok, _ = trained
    rows, mean = examples(model, tok, tok.encode("T"))
    assert rows == [] and math.isnan(mean)


def test_predict(trained):
    model, tok, _ = trained
    ids = tok.encode(PROMPT)
    pred = predict(model, tok, ids, k=5)
    assert pred.ids == ids and pred.dropped == 0
    assert len(pred.guesses) == 5
    probs = [g.prob for g in pred.guesses]
    assert probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1 + 1e-6
    assert all(g.text == tok.token_text(g.id) for g in pred.guesses)
    full = predict(model, tok, ids, k=tok.vocab_size)
    assert math.isclose(sum(g.prob for g in full.guesses), 1.0, rel_tol=1e-5)
    L, H, T = model.config.n_layer, model.config.n_head, len(ids)
    assert pred.attention.shape == (L, H, T, T)
    # Lower temperature sharpens the distribution, keeping the order.
    cold = predict(model, tok, ids, k=5, temperature=0.5)
    assert [g.id for g in cold.guesses] == [g.id for g in pred.guesses]
    assert cold.guesses[0].prob > pred.guesses[0].prob


def test_predict_long_and_empty_prefixes(trained):
    model, tok, _ = trained
    block = model.config.block_size
    ids = tok.encode(PROMPT * 3)
    pred = predict(model, tok, ids, k=3)
    assert pred.dropped == len(ids) - block
    assert pred.ids == ids[-block:]
    assert context(ids, block) == (ids[-block:], len(ids) - block)
    empty = predict(model, tok, [], k=3)
    assert empty.ids == [] and empty.attention is None and len(empty.guesses) == 3


def test_greedy_sampling_is_deterministic(trained):
    model, tok, _ = trained
    ids = tok.encode("The ")
    a = list(sample(model, ids, 40, temperature=0))
    b = list(sample(model, ids, 40, temperature=0))
    assert a == b and len(a) == 40
    # Greedy means: each token is the model's top guess after everything before it.
    assert a[0] == predict(model, tok, ids, k=1, attention=False).guesses[0].id
    assert a[5] == predict(model, tok, ids + a[:5], k=1, attention=False).guesses[0].id


def test_seeded_sampling_is_reproducible(trained):
    model, tok, _ = trained
    ids = tok.encode("The ")
    a = list(sample(model, ids, 40, temperature=1.0, seed=3))
    b = list(sample(model, ids, 40, temperature=1.0, seed=3))
    c = list(sample(model, ids, 40, temperature=1.0, seed=4))
    assert a == b
    assert a != c
    assert all(0 <= t < tok.vocab_size for t in a)


def test_top_k_1_and_tiny_top_p_equal_greedy(trained):
    model, tok, _ = trained
    ids = tok.encode("The ")
    greedy = list(sample(model, ids, 30, temperature=0))
    assert list(sample(model, ids, 30, temperature=1.0, top_k=1, seed=5)) == greedy
    assert list(sample(model, ids, 30, temperature=1.5, top_p=1e-9, seed=5)) == greedy


def test_top_k_limits_the_choices(trained):
    model, tok, _ = trained
    ids = tok.encode("The ")
    top2 = {g.id for g in predict(model, tok, ids, k=2, attention=False).guesses}
    firsts = {next(sample(model, ids, 1, temperature=2.0, top_k=2, seed=s)) for s in range(30)}
    assert firsts <= top2


def test_sampling_past_the_context_length(trained):
    model, tok, _ = trained
    n = model.config.block_size * 2
    out = list(sample(model, tok.encode("The "), n, temperature=0))
    assert len(out) == n


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_baselines_on_the_fables(kind):
    corpus = load_corpus(["fables"])
    tok = TextTokenizer.train(kind, corpus.texts)
    data = TokenData.build(corpus, tok)
    b = baselines(data.train, data.val, tok.vocab_size)
    assert b.uniform == pytest.approx(math.log(tok.vocab_size))
    assert b.bigram < b.unigram < b.uniform
    assert b.bigram > 0


def test_baselines_match_hand_computed_counts():
    train = torch.tensor([0, 1, 0, 1, 0, 2])
    val = torch.tensor([0, 1, 2])
    V = 3
    b = baselines(train, val, V)
    uni = torch.tensor([3 + 1, 2 + 1, 1 + 1], dtype=torch.double) / 9
    assert b.unigram == pytest.approx(-(uni[[0, 1, 2]].log().mean()).item())
    # Pairs in train: 0->1 twice, 1->0 twice, 0->2 once; rows: 0 three times, 1 twice.
    p01 = (2 + V * uni[1]) / (3 + V)
    p12 = (0 + V * uni[2]) / (2 + V)
    assert b.bigram == pytest.approx(-((p01.log() + p12.log()) / 2).item())
