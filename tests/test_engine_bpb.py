"""Val bits per byte (#19 section 3): total nats over the val text's UTF-8 bytes, over ln 2."""

from __future__ import annotations

import math

import pytest

from tui_gpt.engine.checkpoint import load_trainer, save_checkpoint
from tui_gpt.engine.dataset import bits_per_byte, bpb_text
from tui_gpt.engine.session import open_run
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.engine.trainer import History


def test_char_tokenizer_on_ascii_text_is_loss_over_ln2(make_spec, tiny_file):
    run = open_run(make_spec([str(tiny_file)], eval_interval=5))
    assert run.data.val_bytes_per_token == 1.0  # one ASCII character, one byte, one token
    evals = [e for e in run.trainer.run(steps=10) if e.val_loss is not None]
    assert len(evals) == 3
    for e in evals:
        assert e.val_bpb == pytest.approx(e.val_loss / math.log(2), abs=1e-6)
    assert run.trainer.history.val_bytes_per_token == 1.0


def test_a_bpe_run_divides_by_its_own_bytes(make_spec, tiny_file):
    run = open_run(make_spec([str(tiny_file)], tokenizer="bpe", vocab_size=300, eval_interval=5))
    val, tok = run.data.val, run.tokenizer
    # Every byte of the val text once, counted from the tokens' own bytes (no end-of-text here: one document).
    text_bytes = len(tok.to_bytes(val.tolist()))
    assert text_bytes == len(tok.decode(val.tolist()).encode("utf-8"))
    bpt = run.data.val_bytes_per_token
    assert bpt == pytest.approx(text_bytes / len(val), rel=1e-12) and bpt > 1.2  # merges: several bytes a token
    e = next(iter(run.trainer.run(steps=1)))  # the evaluation before the first step
    assert e.val_bpb == pytest.approx(e.val_loss * len(val) / text_bytes / math.log(2), rel=1e-9)
    assert e.val_bpb < e.val_loss / math.log(2)


def test_a_token_counts_its_utf8_bytes_and_end_of_text_one():
    tok = TextTokenizer.train("char", ["café ☕"])
    assert [int(tok.byte_lengths[i]) for i in tok.encode("café ☕")] == [1, 1, 1, 2, 1, 3]
    assert tok.byte_lengths[tok.eot_id] == 1


def test_the_history_keeps_bytes_per_token_through_a_checkpoint(make_spec, tiny_file, tmp_path):
    run = open_run(make_spec([str(tiny_file)], tokenizer="bpe", vocab_size=300, eval_interval=5))
    list(run.trainer.run(steps=5))
    h = run.trainer.history
    assert History.from_dict(h.to_dict()) == h
    assert History.from_dict({}).val_bytes_per_token is None  # a checkpoint from before it
    path = save_checkpoint(tmp_path / "ck", run.trainer, run.tokenizer, run.corpus_info())
    again = load_trainer(path, run.data)
    assert again.history.val_bytes_per_token == run.data.val_bytes_per_token
    assert again.bits_per_byte(2.0) == pytest.approx(bits_per_byte(2.0, run.data.val_bytes_per_token))


def test_bpb_text():
    assert bpb_text(2.72839) == " · 2.7284 bpb"
    assert bpb_text(None) == ""
