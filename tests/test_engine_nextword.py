"""Next-word search: exact against brute force, honest about its bound, healing, cancellation, word losses."""

from __future__ import annotations

import itertools
import math
import re
import time

import pytest
import torch
from torch.nn import functional as F

from tui_gpt.engine.model import GPT, GPTConfig
from tui_gpt.engine.session import open_run
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.nextword import Reads, ghost, next_words, split_typed, split_words, word_examples, word_spans

# The word rule of nextword.py for a tiny alphabet, written independently: a leading space and a run
# of letters, or of punctuation; or a run of whitespace.
WORD = re.compile(r" ?[ab]+| ?\.+|\s+")


def tiny_char_model(seed: int = 0) -> tuple[GPT, TextTokenizer]:
    tok = TextTokenizer.train("char", ["ab ba. a\nb"])  # vocab: EOT, UNK, \n, space, ., a, b
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)  # a peaked, uneven distribution: a real test of the ordering
    return model.eval(), tok


def _fits(body: str, typed: str) -> bool:
    return body.startswith(typed) or typed.startswith(body)


def brute_force(model: GPT, tok: TextTokenizer, text: str, max_len: int) -> dict[str, float]:
    """p(word | text) by enumerating every token string of up to max_len + 1 tokens."""
    head, typed = split_typed(text)
    ctx = tok.encode(head) or [tok.eot_id]
    alphabet = [i for i in range(tok.vocab_size) if not tok.is_special(i)]
    words: dict[str, float] = {}
    typed_p = 0.0
    for n in range(0, max_len + 1):
        seqs = [list(q) for q in itertools.product(alphabet, repeat=n) if _fits(tok.decode(list(q)), typed)]
        if not seqs:
            continue
        with torch.no_grad():
            logits, _, _ = model(torch.tensor([ctx + q for q in seqs]))
        logp = F.log_softmax(logits.double(), dim=-1)  # (N, T, V)
        for row, seq in enumerate(seqs):
            body = tok.decode(seq)
            p_seq = math.exp(sum(logp[row, len(ctx) - 1 + j, t].item() for j, t in enumerate(seq)))
            if n == len(typed):
                typed_p += p_seq
            m = WORD.match(body)
            if len(body) < len(typed) or m is None or m.group() != body:
                continue  # still typing, or already two words
            last = logp[row, -1].exp()
            for t in [tok.eot_id, *alphabet]:  # what follows the word: does it start a new one?
                after = body + ("" if t == tok.eot_id else tok.decode([t]))
                if t == tok.eot_id or WORD.match(after).group() == body:
                    words[body] = words.get(body, 0.0) + p_seq * float(last[t])
    return {w: p / typed_p for w, p in words.items()}


@pytest.mark.parametrize("text", ["ab ", "ab\n", "ba b", "a."])
def test_equals_brute_force_enumeration(text):
    model, tok = tiny_char_model()
    max_len = 6
    want = brute_force(model, tok, text, max_len)
    k = 3
    got = next_words(model, tok, text, k=k, budget=10_000, width=4, max_tokens=max_len)
    assert not got.cut
    best = sorted(want.items(), key=lambda kv: -kv[1])[:k]
    assert [w.text for w in got.words] == [w for w, _ in best]
    for w, (_, p) in zip(got.words, best, strict=True):
        assert w.prob == pytest.approx(p, abs=1e-6)
        assert w.nll == pytest.approx(-math.log(p), abs=1e-5)
    assert got.other == pytest.approx(1 - sum(p for _, p in best), abs=1e-6)


def test_temperature_and_batch_width_do_not_change_the_answer_only_its_cost():
    model, tok = tiny_char_model(seed=1)
    a = next_words(model, tok, "ab ", k=3, budget=10_000, width=1, max_tokens=4)
    b = next_words(model, tok, "ab ", k=3, budget=10_000, width=16, max_tokens=4)
    assert [w.text for w in a.words] == [w.text for w in b.words]
    assert [w.prob for w in a.words] == pytest.approx([w.prob for w in b.words], abs=1e-6)
    hot = next_words(model, tok, "ab ", k=3, temperature=5.0, budget=10_000, max_tokens=4)
    assert hot.words[0].prob < a.words[0].prob  # flatter at a higher temperature


@pytest.fixture(scope="module")
def word_model(make_spec_module):
    run = open_run(make_spec_module(tokenizer="word", n_embd=32, block_size=32))
    for _ in run.trainer.run(steps=40):
        pass
    run.trainer.model.eval()
    return run.trainer.model, run.tokenizer


@pytest.fixture(scope="module")
def make_spec_module():
    from tests.conftest import FAST_TRAIN, TINY_MODEL
    from tui_gpt.engine.session import RunSpec

    def make(tokenizer="char", **model):
        return RunSpec(sources=[], tokenizer=tokenizer, **{**TINY_MODEL, **model}, train={**FAST_TRAIN})

    return make


@torch.no_grad()
def test_word_tokenizer_equals_next_token_distribution_merged_by_word(word_model):
    """One whole-word token is one word: p(word) = p(token) * p(a new word starts after it), merged by text."""
    model, tok = word_model
    text = "The fox ran to the "
    got = next_words(model, tok, text, k=5, budget=200)
    head, typed = split_typed(text)
    ctx = tok.encode(head)
    logits, _, _ = model(torch.tensor([ctx]))
    p = F.softmax(logits[0, -1].double(), dim=-1)
    merged: dict[str, float] = {}
    whole = [
        t
        for t, w in enumerate(tok.token_texts)
        if not tok.is_special(t) and w.startswith(typed) and split_words(w) == [0] and w.strip()
    ]
    after, _, _ = model(torch.tensor([[*ctx, t] for t in whole]))
    q = F.softmax(after[:, -1].double(), dim=-1)  # (N, V)
    ends: dict[str, torch.Tensor] = {}  # by the word's last character: what may follow it
    for t, row in zip(whole, q, strict=True):
        w = tok.token_texts[t]
        if w[-1] not in ends:
            ends[w[-1]] = torch.tensor(
                [
                    u == tok.eot_id or (not tok.is_special(u) and _starts_word(w, tok.token_texts[u]))
                    for u in range(tok.vocab_size)
                ]
            )
        merged[w] = merged.get(w, 0.0) + float(p[t]) * float(row[ends[w[-1]]].sum())
    # p(the text goes on with the typed space): every token that starts with it (typed is one character).
    z = sum(float(p[t]) for t in range(tok.vocab_size) if tok.token_texts[t].startswith(typed))
    for w in got.words[:3]:
        assert w.text in merged
        # The search also finds the rare multi-token spellings (" " + "fox"): never less, barely more.
        assert merged[w.text] / z <= w.prob + 1e-6
        assert w.prob <= merged[w.text] / z + 0.05


def _starts_word(word: str, nxt: str) -> bool:
    return bool(nxt) and len(word) in split_words(word + nxt)


@pytest.mark.parametrize("kind", ["char", "bpe", "word"])
def test_probabilities_never_sum_above_one(kind, make_spec_module):
    run = open_run(make_spec_module(tokenizer=kind))
    model, tok = run.trainer.model.eval(), run.tokenizer
    for text in ["", "The", "The fox ran to the ", "The fox ran to the ri", "seed.\n", "12"]:
        res = next_words(model, tok, text, k=20, budget=30)
        total = sum(w.prob for w in res.words)
        assert total <= 1 + 1e-6
        assert res.other == pytest.approx(max(0.0, 1 - total), abs=1e-9)
        assert all(w.text.startswith(res.typed) for w in res.words)


def test_long_text_and_no_mask_models_still_answer(make_spec_module):
    run = open_run(make_spec_module(causal=False))
    model, tok = run.trainer.model.eval(), run.tokenizer
    res = next_words(model, tok, "The fox ran to the river and the dog sat by the door. " * 3, k=5, budget=6)
    assert len(res.words) == 5 and res.context == model.config.block_size // 2
    assert sum(w.prob for w in res.words) <= 1 + 1e-6


def test_budget_cut_is_reported():
    model, tok = tiny_char_model()
    res = next_words(model, tok, "ab ", k=5, budget=1)
    assert res.cut and res.cut_by == "budget"
    res = next_words(model, tok, "ab ", k=5, budget=10_000, max_tokens=6)
    assert not res.cut and res.cut_by == ""


def test_the_cut_names_its_cause_the_clock_or_the_bounds():
    model, tok = tiny_char_model()
    res = next_words(model, tok, "ab ", k=5, budget=10_000, seconds=0)  # out of time before the first expansion
    assert (res.cut, res.cut_by, res.forwards) == (True, "time", 1)
    res = next_words(model, tok, "ab ", k=5, budget=10_000, max_tokens=1)  # words longer than 1 token dropped
    assert (res.cut, res.cut_by) == (True, "bounds")


def test_mid_word_completion_is_conditioned_on_the_typed_letters(trained):
    model, tok, _ = trained
    text = "The fox ran to the ri"
    res = next_words(model, tok, text, k=5, budget=100, max_tokens=8)  # the model sees all of the text
    assert res.typed == " ri"
    assert all(w.text.startswith(" ri") for w in res.words)
    # Exact for a char model: p(" river" and a boundary | " ri") from full forwards.
    w = res.words[0]
    ids = tok.encode(text[: -len(res.typed)])
    seq = tok.encode(w.text)
    logits, _, _ = model(torch.tensor([ids + seq]))
    logp = F.log_softmax(logits[0].double(), dim=-1)
    lp = sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(seq))
    lp_typed = sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(seq[: len(res.typed)]))
    ends = sum(
        logp[-1, u].exp().item()
        for u in range(tok.vocab_size)
        if u == tok.eot_id or (not tok.is_special(u) and _starts_word(w.text, tok.token_texts[u]))
    )
    assert w.prob == pytest.approx(math.exp(lp - lp_typed) * ends, abs=1e-6)


def test_after_word_lists_the_words_after_a_finished_word(trained):
    model, tok, _ = trained
    text = "The fox ran to the"
    res = next_words(model, tok, text, k=5, budget=100, max_tokens=8, after_word=True)
    assert res.typed == ""
    assert all(not w.text[0].isalpha() for w in res.words)  # " river", ",", "." ... never "the" + "y"
    w = res.words[0]
    ids, seq = tok.encode(text), tok.encode(w.text)
    logits, _, _ = model(torch.tensor([ids + seq]))
    logp = F.log_softmax(logits[0].double(), dim=-1)
    lp = sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(seq))
    texts = tok.token_texts
    plain = [u for u in range(tok.vocab_size) if not tok.is_special(u)]
    starts = sum(logp[len(ids) - 1, u].exp().item() for u in plain if _starts_word(text, texts[u]))  # the condition
    ends = sum(
        logp[-1, u].exp().item()
        for u in range(tok.vocab_size)
        if u == tok.eot_id or (not tok.is_special(u) and _starts_word(w.text, texts[u]))
    )
    assert w.prob == pytest.approx(math.exp(lp) * ends / starts, abs=1e-6)


def test_ghost_is_the_rest_of_the_likeliest_word(trained):
    model, tok, _ = trained
    for text in ["The fox ran to the ri", "The fox ran to the "]:
        res = next_words(model, tok, text, k=1)
        assert ghost(model, tok, text) == res.words[0].text[len(res.typed) :]
    assert ghost(model, tok, "The fox", cancelled=lambda: True) == ""


def test_split_typed():
    assert split_typed("over the la") == ("over the", " la")
    assert split_typed("over the ") == ("over the", " ")
    assert split_typed("over the") == ("over", " the")
    assert split_typed("end.\n") == ("end.\n", "")
    assert split_typed("") == ("", "")
    assert split_words("The fox, 12 hens") == [0, 3, 7, 8, 11]


def test_cancellation_returns_promptly(trained):
    model, tok, _ = trained
    assert next_words(model, tok, "The fox", cancelled=lambda: True) is None
    calls = []

    def after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    t = time.perf_counter()
    assert next_words(model, tok, "The fox ran to the ", k=50, budget=10_000, cancelled=after_two) is None
    assert time.perf_counter() - t < 1.0
    assert len(calls) == 3  # before the search, then inside the first pass: before its block, before its head


def test_a_search_asked_between_blocks_and_never_cancelled_finds_the_same_words(trained):
    model, tok, _ = trained
    for text in ("The fox ran to the ", "The fox ran to the ri"):
        asked: list[int] = []
        found = next_words(model, tok, text, k=5, cancelled=lambda asked=asked: bool(asked.append(1)))
        assert found == next_words(model, tok, text, k=5) and len(asked) > found.forwards  # asked inside passes too


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_word_examples_losses_add_up(kind, make_spec_module):
    run = open_run(make_spec_module(tokenizer=kind, block_size=64))
    model, tok = run.trainer.model.eval(), run.tokenizer
    text = "The quick brown fox jumps over the lazy dog."
    ex = word_examples(model, tok, text)
    assert "".join(r.word for r in ex.rows) == text
    assert [r.word for r in ex.rows] == [
        "The",
        " quick",
        " brown",
        " fox",
        " jumps",
        " over",
        " the",
        " lazy",
        " dog",
        ".",
    ]
    ids = [tok.eot_id, *tok.encode(text)]
    _, loss, _ = model(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    assert ex.loss_per_token == pytest.approx(loss.item(), rel=1e-5)
    assert ex.loss_per_word == pytest.approx(loss.item() * ex.n_tokens / len(ex.rows), rel=1e-5)
    assert all(r.prob == pytest.approx(math.exp(-r.nll)) for r in ex.rows)
    assert ex.rows[3].prefix == "The quick brown"


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_word_spans_follow_split_words_and_keep_specials_apart(kind, make_spec_module):
    tok = open_run(make_spec_module(tokenizer=kind)).tokenizer
    text = "The fox, 12 hens\n\nend" + (" café" if kind == "bpe" else "")  # é: two bytes, unknown to "char"
    ids = tok.encode(text)
    spans = word_spans(tok, ids)
    words = [tok.decode(ids[i] for i in span) for span in spans]
    starts = split_words(text)
    assert words == [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    assert [i for span in spans for i in span] == list(range(len(ids)))  # every token in one word, in order
    # An end-of-text token is a word of its own, between the words around it.
    both = [*tok.encode("a fox"), tok.eot_id, *tok.encode(" ran")]
    assert [tok.decode(both[i] for i in span) for span in word_spans(tok, both)] == [
        "a",
        " fox",
        "<|endoftext|>",
        " ran",
    ]
    assert word_spans(tok, both)[2] == range(len(tok.encode("a fox")), len(tok.encode("a fox")) + 1)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_per_word_surprisal_is_the_sum_of_its_tokens(kind, make_spec_module):
    from tui_gpt.probes.predict import surprisal

    run = open_run(make_spec_module(tokenizer=kind, block_size=64))
    for _ in run.trainer.run(steps=20):
        pass
    model, tok = run.trainer.model.eval(), run.tokenizer
    text = "The quick brown fox jumps over the lazy dog."
    view = surprisal(model, tok, tok.encode(text))
    assert "".join(w.text for w in view.words) == text
    assert [w.text for w in view.words][:3] == ["The", " quick", " brown"]
    assert math.isnan(view.words[0].nll)  # "The" starts at the first token: nothing before it predicts it
    nll = {r.position: r.nll for r in view.examples}
    ids = torch.tensor([view.ids])
    logp = F.log_softmax(model(ids)[0][0].detach().double(), dim=-1)  # (T, V): an independent reading
    for w in view.words[1:]:
        tokens = range(w.first, w.first + w.tokens)
        assert w.nll == pytest.approx(sum(nll[t] for t in tokens), abs=1e-9)
        # -log p(word | prefix): the chain rule over its tokens, read off one forward pass
        chain = -sum(float(logp[t - 1, view.ids[t]]) for t in tokens)
        assert w.nll == pytest.approx(chain, abs=1e-4) and w.prob == pytest.approx(math.exp(-chain), rel=1e-4)
    # The words' total is the tokens' total, from the second word on.
    assert sum(w.nll for w in view.words[1:]) == pytest.approx(
        sum(r.nll for r in view.examples[view.words[1].first - 1 :])
    )


def test_cli_complete_words_prints_the_table_and_the_cut(make_spec_module, tmp_path, capsys):
    from tui_gpt.commands.cli import main

    run = open_run(make_spec_module())
    ckpt = str(run.save(tmp_path / "ck"))
    assert main(["complete", ckpt, "The fox ran to the ", "--words", "--top-k", "4"]) == 0
    out = capsys.readouterr().out
    assert "next word after" in out and "other" in out
    rows = [line.split("│")[1:-1] for line in out.splitlines() if line.startswith("│")]
    ranks = [cells[0].strip() for cells in rows if cells[0].strip().isdigit()]
    assert ranks == ["1", "2", "3", "4"]
    assert all(cells[1].strip().startswith("·") for cells in rows if cells[0].strip().isdigit())  # visible space
    assert main(["complete", ckpt, "The fox ran to the ri", "--words", "--budget", "1"]) == 0
    out = capsys.readouterr().out
    assert "rest of the word '·ri'" in out and "search cut after 1 forward" in out


@pytest.mark.parametrize(
    "bad", [["--top-k", "1000000000", "--budget", "1000000000"], ["--top-k", "1001"], ["--budget", "1001"]]
)
def test_cli_complete_refuses_a_k_or_budget_beyond_its_bound_before_loading(bad, tmp_path, capsys):
    from tui_gpt.commands.cli import main

    with pytest.raises(SystemExit) as info:  # the checkpoint need not exist: nothing is loaded
        main(["complete", str(tmp_path / "ck"), "The fox ", "--words", *bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: {bad[0]} must be an integer in 1..1000" in err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_cli_complete_names_the_time_limit_that_cut_the_search(make_spec_module, tmp_path, capsys, monkeypatch):
    from tui_gpt.commands import subcommands
    from tui_gpt.commands.cli import main

    ckpt = str(open_run(make_spec_module()).save(tmp_path / "ck"))
    monkeypatch.setattr(subcommands, "SEARCH_SECONDS", 0.0)
    assert main(["complete", ckpt, "The fox ", "--words", "--top-k", "1000", "--budget", "1000"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "search cut at its 0 s time limit, after 1 forward passes" in out


def test_a_search_starts_from_what_the_model_read_before(trained):
    model, tok, _ = trained
    reads = Reads()
    text = "The fox ran to the ri"
    first = next_words(model, tok, text, k=5, reads=reads)
    again = next_words(model, tok, text + "v", k=5, reads=reads)  # the same word: the text before it is read
    want = next_words(model, tok, text + "v", k=5)
    assert first == next_words(model, tok, text, k=5)  # nothing read before: a search as ever
    assert again.forwards == want.forwards - 1  # no pass over the context
    assert [w.text for w in again.words] == [w.text for w in want.words]
    assert all(math.isclose(a.prob, b.prob, rel_tol=1e-5) for a, b in zip(again.words, want.words, strict=True))
    grown = next_words(model, tok, text + "ver and the ", k=5, reads=reads)  # one pass over the new tokens only
    whole = next_words(model, tok, text + "ver and the ", k=5)
    assert [w.text for w in grown.words] == [w.text for w in whole.words] and grown.forwards == whole.forwards
    other = GPT(model.config).eval()  # another model's keys and values are never used
    assert next_words(other, tok, text, k=5, reads=reads).forwards == next_words(other, tok, text, k=5).forwards
