"""The Lens, the app's one road to the model: cached next tokens equal a whole forward pass; leases."""

from __future__ import annotations

import math

import pytest
from safetensors.torch import save

from tui_gpt.probes.replica import Lens


@pytest.fixture
def lens(trained):
    model, tok, _ = trained
    lens = Lens(tok.hf.to_str(), model.config.to_dict())
    lens.swap(lens.stage(save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})), step=60)
    return lens


def same(a, b) -> bool:
    return [g.id for g in a] == [g.id for g in b] and all(
        math.isclose(x.prob, y.prob, rel_tol=1e-4, abs_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def test_next_tokens_typed_key_by_key_equal_a_whole_forward_pass(lens):
    text = ""
    for ch in "The fox ran to the river, and the dog":
        text += ch
        fast = lens.next_tokens(text, 10, 1.0)
        full = lens.analyze(text, 10, 1.0).prediction
        assert fast.ids == full.ids and same(fast.guesses, full.guesses), text
    assert lens._prompt_cache is not None and lens._prompt_cache[1] == fast.ids  # the cache follows the window


def test_next_tokens_after_a_backspace_a_slide_and_new_weights(lens, trained):
    model, _, _ = trained
    lens.next_tokens("The fox ran", 5, 1.0)
    for text in ("The fox ra", "The fox ran to the river " * 4):  # shorter; longer than the context
        assert same(lens.next_tokens(text, 5, 0.7).guesses, lens.analyze(text, 5, 0.7).prediction.guesses)
    old = lens.model
    lens.swap(lens.stage(save({k: v * 1.01 for k, v in model.state_dict().items() if k != "lm_head.weight"})), 61)
    assert lens.model is not old
    text = "The fox ran"
    assert same(lens.next_tokens(text, 5, 1.0).guesses, lens.analyze(text, 5, 1.0).prediction.guesses)


def test_a_leased_model_never_takes_a_snapshot(lens, trained):
    model, _, _ = trained
    blob = save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})
    with lens.leased() as reading:
        lens.swap(lens.stage(blob), 61)  # while a thread reads `reading`
        staged = lens.stage(blob)
        assert staged is not reading
        lens.swap(staged, 62)
    assert lens.model is staged


def test_words_worked_out_ahead_answer_the_next_key_and_die_with_the_weights(lens, trained, monkeypatch):
    from tui_gpt.probes import replica as lens_module

    text = "The fox r"
    found = lens.next_words(text, 5, 1.0)
    done = lens.think_ahead(found, text, 5, 1.0, lambda: False)
    key = found.words[0].text[len(found.typed)] if len(found.words[0].text) > len(found.typed) else " "
    assert done >= 1 and (text + key, 5, 1.0) in lens._ahead
    fresh = lens_module.next_words(lens.model, lens.tokenizer, text + key, k=5, temperature=1.0)
    searches = []
    monkeypatch.setattr(lens_module, "next_words", lambda *a, **kw: searches.append(a) or fresh)
    ready = lens.next_words(text + key, 5, 1.0)
    assert searches == [] and ready == fresh  # answered from the work done ahead, and the same answer
    lens.next_words(text + key, 6, 1.0)  # another k was not worked out
    assert len(searches) == 1
    model, _, _ = trained
    lens.swap(lens.stage(save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})), step=61)
    assert lens._ahead == {}
    lens.next_words(text + key, 5, 1.0)
    assert len(searches) == 2  # new weights: worked out again
    assert lens.think_ahead(found, text, 5, 1.0, lambda: True) == 0  # cancelled: nothing done
