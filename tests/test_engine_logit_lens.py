"""The logit lens (#19 section 1): each layer's residual stream through the final norm and the head."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt import make_model
from torch.nn import functional as F

from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.logit_lens import layer_name, logit_lens, read_out, residual_streams

TEXT = "the quick brown fox jumps over a lazy dog"


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train("char", [TEXT])


@pytest.fixture(scope="module")
def model(tok):
    return make_model(vocab_size=tok.vocab_size, scale=3.0)  # large weights: every layer moves the guess


def test_the_last_layer_is_the_models_own_output(model, tok):
    ids = tok.encode("the quick brown")
    with torch.no_grad():
        logits, _, _ = model(torch.tensor([ids]))
    own = F.softmax(logits[0, -1].float(), dim=-1)
    lens = logit_lens(model, tok, ids, k=tok.vocab_size)
    assert [r.layer for r in lens.rows] == [0, 1, 2]  # the embeddings, then both blocks
    last = lens.rows[-1].guesses
    assert len(last) == tok.vocab_size
    assert torch.allclose(torch.tensor([own[g.id] for g in last]), torch.tensor([g.prob for g in last]), atol=1e-5)
    assert lens.final_id == int(own.argmax()) == last[0].id
    assert lens.rows[-1].final_prob == pytest.approx(float(own.max()), abs=1e-5)
    # every position, not just the last: the read-out of the last stream is the model's logits
    streams = residual_streams(model, torch.tensor([ids]))
    assert streams.shape == (3, 1, len(ids), model.config.n_embd)
    assert torch.allclose(read_out(model, streams[-1]), logits.float(), atol=1e-5)


def test_earlier_layers_read_differently_and_rows_are_distributions(model, tok):
    lens = logit_lens(model, tok, tok.encode("a lazy d"), k=5)
    for row in lens.rows:
        probs = [g.prob for g in row.guesses]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert 0 <= row.final_prob <= 1
    assert [g.id for g in lens.rows[0].guesses] != [g.id for g in lens.rows[-1].guesses]
    assert [layer_name(r.layer) for r in lens.rows] == ["embed", "layer 1", "layer 2"]


def test_an_empty_or_long_prompt(model, tok):
    empty = logit_lens(model, tok, [], k=3)
    assert empty.ids == [tok.eot_id] and empty.dropped == 0
    long = tok.encode(TEXT)  # longer than block_size 16: the last 16 tokens are read
    lens = logit_lens(model, tok, long, k=3)
    assert lens.ids == long[-16:] and lens.dropped == len(long) - 16
