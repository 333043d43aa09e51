"""Head scores (#19 section 2): previous-token and induction scores on hand-built attention patterns."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt import make_model

from tui_gpt.engine.heads import (
    MIN_PERIOD,
    head_scores,
    induction_score,
    make_probe,
    periods,
    previous_token_score,
)
from tui_gpt.engine.tokenizer import TextTokenizer

P = 5  # period of the hand-built sequences: eot, then 5 tokens twice
T = 2 * P + 1


def pattern(target) -> torch.Tensor:
    """A (1, 1, T, T) attention pattern where query i attends only to key target(i) (itself where None)."""
    att = torch.zeros(1, 1, T, T)
    for i in range(T):
        j = target(i)
        att[0, 0, i, i if j is None else j] = 1.0
    return att


def uniform() -> torch.Tensor:
    """A causal head that spreads its attention evenly: 1 / (i + 1) on each of keys 0..i."""
    att = torch.ones(T, T).tril()
    return (att / att.sum(-1, keepdim=True))[None, None]


def test_a_pure_previous_token_head_scores_one():
    att = pattern(lambda i: i - 1 if i else None)
    assert previous_token_score(att).item() == pytest.approx(1.0)
    assert induction_score(att, P).item() == pytest.approx(0.0)  # i - 1 is never the induction target at P >= 4


def test_a_pure_induction_head_scores_one():
    att = pattern(lambda i: i - P + 1 if i >= 1 + P else None)  # in the second repeat: the token after the last time
    assert induction_score(att, P).item() == pytest.approx(1.0)
    assert previous_token_score(att).item() == pytest.approx(0.0)


def test_a_uniform_head_scores_one_over_the_position():
    att = uniform()
    prev = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)
    assert previous_token_score(att).item() == pytest.approx(prev, abs=1e-6)
    ind = sum(1 / (i + 1) for i in range(1 + P, T)) / P
    assert induction_score(att, P).item() == pytest.approx(ind, abs=1e-6)
    assert ind < 0.15  # far from an induction head


def test_scores_average_over_the_batch_and_keep_heads_apart():
    att = torch.cat([pattern(lambda i: i - 1 if i else None), uniform()], dim=1)  # 2 heads
    att = att.expand(3, -1, -1, -1)  # a batch of 3
    assert previous_token_score(att).shape == (2,)
    assert previous_token_score(att)[0].item() == pytest.approx(1.0)
    assert induction_score(att, P)[1].item() == pytest.approx(induction_score(uniform(), P).item())


def test_the_probe_varies_the_repeat_length():
    assert periods(16) == [4, 5, 6, 7]  # (16 - 1) // 2 = 7 at most: eot + 2 x 7 fits
    ps = periods(1024)
    assert len(ps) == 6 and ps[0] == MIN_PERIOD and ps[-1] == 64 and len(set(ps)) == len(ps)
    with pytest.raises(ValueError):
        periods(8)
    tok = TextTokenizer.train("char", ["abcdefghij"])
    probe = make_probe(tok, 32, seed=3)
    for p, ids in probe.batches:
        assert ids.shape == (8, 2 * p + 1)
        assert (ids[:, 0] == tok.eot_id).all() and torch.equal(ids[:, 1 : 1 + p], ids[:, 1 + p :])
        assert not any(tok.is_special(i) for i in ids[:, 1:].flatten().tolist())
    again = make_probe(tok, 32, seed=3)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(probe.batches, again.batches, strict=True))


def test_every_head_of_a_model_is_scored():
    tok = TextTokenizer.train("char", ["the quick brown fox"])
    model = make_model(vocab_size=tok.vocab_size, block_size=16)
    probe = make_probe(tok, 16)
    s = head_scores(model, probe)
    assert s.previous_token.shape == s.induction.shape == (2, 2)
    assert ((s.previous_token >= 0) & (s.previous_token <= 1)).all()
    assert ((s.induction >= 0) & (s.induction <= 1)).all()
    # the same numbers as scoring the model's own attention by hand, for one repeat length
    p, ids = probe.batches[0]
    with torch.no_grad():
        _, _, attns = model(ids, want_attn=True)
    one = head_scores(model, type(probe)([(p, ids)]))
    assert torch.allclose(one.previous_token[1], previous_token_score(attns[1]))
    assert torch.allclose(one.induction[0], induction_score(attns[0], p))
    layer, head, best = s.best_induction()
    assert best == pytest.approx(float(s.induction.max())) and 1 <= layer <= 2 and 1 <= head <= 2
    assert s.icl == s.icl  # a number
