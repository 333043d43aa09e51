"""The logit lens (#19 section 1): each layer's residual stream through the final norm and the head; in words (#28)."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt import make_model
from torch.nn import functional as F

from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.logit_lens import cut, layer_name, lens_words, logit_lens, read_out, residual_streams
from tui_gpt.probes.nextword import next_words

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


# ---- the lens in words (#28 goal 4): the Next word pane's search on each layer's reading ----------------------


class LayerReadout:
    """A model whose logits are layer `depth`'s lens, computed the long way (the residual streams read out):
    what `brute_force` calls, independent of `cut`."""

    def __init__(self, model, depth: int) -> None:
        self.model, self.depth = model, depth

    def __call__(self, x):
        return read_out(self.model, residual_streams(self.model, x)[self.depth]), None, []


def test_cut_is_the_lens_at_every_position_and_shares_the_weights(model, tok):
    x = torch.tensor([tok.encode("the quick brown")])
    streams = residual_streams(model, x)
    owned = {id(p) for p in model.parameters()}
    for depth in range(model.config.n_layer + 1):
        lens = cut(model, depth)
        assert {id(p) for p in lens.parameters()} <= owned  # nothing copied, nothing new
        logits, _, _ = lens(x)
        assert torch.allclose(logits.float(), read_out(model, streams[depth]), atol=1e-5)
        if depth:  # the cached road the search takes: the same logits
            cached, _ = lens.forward_cached(x)
            assert torch.allclose(cached.float(), logits.float(), atol=1e-5)
    assert model.config.n_layer == 2 and len(list(model.transformer.h)) == 2  # the model is untouched
    with pytest.raises(ValueError, match="from 0 to 2"):
        cut(model, 3)


@pytest.mark.parametrize("text", ["the ", "a lazy d", ""])
def test_the_last_layer_in_words_is_the_next_word_pane(model, tok, text):
    lens = lens_words(model, tok, text, k=4)
    pane = next_words(model, tok, text, k=4)  # what the Next word pane shows at temperature 1
    assert len(lens.rows) == model.config.n_layer + 1
    last = lens.rows[-1]
    assert [(w.text, w.tokens) for w in last.words] == [(w.text, w.tokens) for w in pane.words]
    assert [w.prob for w in last.words] == pytest.approx([w.prob for w in pane.words], abs=1e-9)
    assert last.typed == pane.typed and lens.final == pane.words[0].text
    assert lens.final_prob(model.config.n_layer) == pytest.approx(pane.words[0].prob)
    assert [w.text for w in lens.rows[0].words] != [w.text for w in last.words]  # the embeddings read differently


@pytest.mark.parametrize("depth", [0, 1])
def test_each_layer_in_words_equals_brute_force_on_that_layers_reading(depth):
    from test_engine_nextword import brute_force, tiny_char_model

    model, tok = tiny_char_model()  # one layer: the embeddings (0) and the block (1, the model's own)
    for text in ("ab ", "ba b"):
        want = brute_force(LayerReadout(model, depth), tok, text, max_len=5)
        lens = lens_words(model, tok, text, k=3, budget=10_000, max_tokens=5)
        got = lens.rows[depth]
        # Tied weights: a token's embedding reads out as itself, so the embeddings' words (" bbbbb") may outgrow
        # the bound, and the search says so; within the bound (5 tokens, as the enumeration's) it is exact.
        assert got.cut_by in ("", "bounds") and (depth == 0 or not got.cut)
        best = sorted(want.items(), key=lambda kv: -kv[1])[:3]
        assert [w.text for w in got.words] == [w for w, _ in best]
        assert [w.prob for w in got.words] == pytest.approx([p for _, p in best], abs=1e-6)


def test_the_lens_in_words_gives_up_when_cancelled(model, tok):
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3  # after the first layers have begun

    assert lens_words(model, tok, "the ", k=3, cancelled=cancelled) is None
