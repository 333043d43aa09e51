"""The Replica, the app's one road to the model: cached next tokens equal a whole forward pass; leases."""

from __future__ import annotations

import math

import pytest
from safetensors.torch import save

from tui_gpt.probes.replica import Replica


@pytest.fixture
def replica(trained):
    model, tok, _ = trained
    replica = Replica(tok.hf.to_str(), model.config.to_dict())
    replica.swap(replica.stage(save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})), step=60)
    return replica


def same(a, b) -> bool:
    return [g.id for g in a] == [g.id for g in b] and all(
        math.isclose(x.prob, y.prob, rel_tol=1e-4, abs_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def test_next_tokens_typed_key_by_key_equal_a_whole_forward_pass(replica):
    text = ""
    for ch in "The fox ran to the river, and the dog":
        text += ch
        fast = replica.next_tokens(text, 10, 1.0)
        full = replica.analyze(text, 10, 1.0).prediction
        assert fast.ids == full.ids and same(fast.guesses, full.guesses), text
    assert replica._prompt_cache is not None and replica._prompt_cache[1] == fast.ids  # the cache follows the window


def test_next_tokens_after_a_backspace_a_slide_and_new_weights(replica, trained):
    model, _, _ = trained
    replica.next_tokens("The fox ran", 5, 1.0)
    for text in ("The fox ra", "The fox ran to the river " * 4):  # shorter; longer than the context
        assert same(replica.next_tokens(text, 5, 0.7).guesses, replica.analyze(text, 5, 0.7).prediction.guesses)
    old = replica.model
    replica.swap(replica.stage(save({k: v * 1.01 for k, v in model.state_dict().items() if k != "lm_head.weight"})), 61)
    assert replica.model is not old
    text = "The fox ran"
    assert same(replica.next_tokens(text, 5, 1.0).guesses, replica.analyze(text, 5, 1.0).prediction.guesses)


def test_a_leased_model_never_takes_a_snapshot(replica, trained):
    model, _, _ = trained
    blob = save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})
    with replica.leased() as reading:
        replica.swap(replica.stage(blob), 61)  # while a thread reads `reading`
        staged = replica.stage(blob)
        assert staged is not reading
        replica.swap(staged, 62)
    assert replica.model is staged


def test_words_worked_out_ahead_answer_the_next_key_and_die_with_the_weights(replica, trained, monkeypatch):
    from tui_gpt.probes import replica as replica_module

    text = "The fox r"
    found = replica.next_words(text, 5, 1.0)
    done = replica.think_ahead(found, text, 5, 1.0, lambda: False)
    key = found.words[0].text[len(found.typed)] if len(found.words[0].text) > len(found.typed) else " "
    assert done >= 1 and (text + key, 5, 1.0) in replica._ahead
    fresh = replica_module.next_words(replica.model, replica.tokenizer, text + key, k=5, temperature=1.0)
    searches = []
    monkeypatch.setattr(replica_module, "next_words", lambda *a, **kw: searches.append(a) or fresh)
    ready = replica.next_words(text + key, 5, 1.0)
    assert searches == [] and ready is not None  # answered from the work done ahead, and the same answer
    assert [w.text for w in ready.words] == [w.text for w in fresh.words]  # (to rounding: from keys read before)
    assert all(math.isclose(a.prob, b.prob, rel_tol=1e-5) for a, b in zip(ready.words, fresh.words, strict=True))
    replica.next_words(text + key, 6, 1.0)  # another k was not worked out
    assert len(searches) == 1
    model, _, _ = trained
    replica.swap(replica.stage(save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})), step=61)
    assert replica._ahead == {}
    replica.next_words(text + key, 5, 1.0)
    assert len(searches) == 2  # new weights: worked out again
    assert replica.think_ahead(found, text, 5, 1.0, lambda: True) == 0  # cancelled: nothing done


# bf16 against fp32, measured on the GPT-2-small-shaped model (random weights, 17 prompts of the
# bench's text): the top-10 log-probs moved by at most 0.024 nats, and two tokens swapped places only
# when fp32 put them within 0.021 nats of each other. Closer than TIE is a tie.
TIE = 0.03


def test_a_bf16_replica_keeps_the_fp32_top_k_order_beyond_ties(trained):
    import torch

    model, tok, _ = trained
    snapshot = save({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"})
    replicas = {}
    for dtype in (torch.float32, torch.bfloat16):
        replicas[dtype] = r = Replica(tok.hf.to_str(), model.config.to_dict(), dtype=dtype)
        r.swap(r.stage(snapshot), step=60)
    assert next(replicas[torch.bfloat16].model.parameters()).dtype == torch.bfloat16
    for text in ("The fox ran to the", "Once upon a time", "The crow said", "A"):
        exact = {g.id: math.log(g.prob) for g in replicas[torch.float32].next_tokens(text, 30, 1.0).guesses}
        fast = replicas[torch.bfloat16].next_tokens(text, 10, 1.0).guesses
        assert all(abs(math.log(g.prob) - exact[g.id]) <= TIE for g in fast), text
        order = [exact[g.id] for g in fast]  # fp32's log-probs, in bf16's order
        assert all(order[j] - order[i] <= TIE for i in range(len(order)) for j in range(i + 1, len(order))), text
        tenth = sorted(exact.values())[-10]
        assert all(exact[g.id] >= tenth - TIE for g in fast), text  # none from beyond fp32's top 10 but ties


def test_a_large_replica_chooses_its_dtype_by_measuring(trained):
    import torch

    from tui_gpt.probes.replica import fast_dtype

    model, _, _ = trained
    assert fast_dtype(model.config) in (torch.float32, torch.bfloat16)
    small = Replica(trained[1].hf.to_str(), model.config.to_dict())
    assert not small.large and small.dtype == torch.float32  # a small model stays exact
