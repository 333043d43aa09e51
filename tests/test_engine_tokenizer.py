"""The three tokenizers: exact round trips on any Unicode, persistence, end-of-text, honest bytes."""

from __future__ import annotations

import unicodedata

import pytest

from tui_gpt.engine.tokenizer import EOT, KINDS, TextTokenizer
from tui_gpt.errors import TuiGptError
from tui_gpt.visible import visible

TEXTS = [
    "The quick brown fox jumps over the lazy dog. It's 42, isn't it?\n",
    "Un café naïve à Noël: déjà vu!\n\tTabs  and   spaces.\r\nWindows line.\n",
    "Emoji time 🙂👍 and 🙂 again 👍👍\n",
    "你好世界。你好, world! 世界\n",
]
SAMPLES = [
    *TEXTS,
    "café naïve",
    "🙂👍",
    "你好世界",
    "The café said 你好 🙂",
    "  leading and trailing spaces  ",
    "\n\nblank lines\n\n\n",
    "",
]
BPE_VOCAB = 300  # small: multibyte characters stay split into byte-level pieces


def train(kind: str) -> TextTokenizer:
    return TextTokenizer.train(kind, TEXTS, BPE_VOCAB if kind == "bpe" else None)


@pytest.fixture(scope="module", params=KINDS)
def tok(request) -> TextTokenizer:
    return train(request.param)


def test_kind_and_special_tokens(tok):
    assert tok.kind in KINDS
    assert tok.eot_id is not None
    assert tok.hf.id_to_token(tok.eot_id) == EOT
    assert tok.is_special(tok.eot_id)
    assert tok.decode([tok.eot_id]) == EOT
    assert 0 <= tok.eot_id < tok.vocab_size


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.to_bytes(ids) == text.encode("utf-8")
    assert "<unk>" not in tok.decode(ids)


def test_encode_batch_matches_encode(tok):
    assert tok.encode_batch(SAMPLES) == [tok.encode(s) for s in SAMPLES]


def test_save_and_load_give_identical_ids(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    again = TextTokenizer.load(path)
    assert again.kind == tok.kind
    assert again.vocab_size == tok.vocab_size
    assert again.eot_id == tok.eot_id
    for text in SAMPLES:
        assert again.encode(text) == tok.encode(text)
        assert again.decode(tok.encode(text)) == text
    assert again.token_texts == tok.token_texts


def test_encode_documents_puts_eot_between_documents(tok):
    docs = ["café 🙂\nline two\n", "你好世界", "The fox."]
    ids = tok.encode_documents(docs)
    assert ids.count(tok.eot_id) == len(docs) - 1
    assert ids[0] != tok.eot_id and ids[-1] != tok.eot_id
    parts, cur = [], []
    for i in ids:
        if i == tok.eot_id:
            parts.append(cur)
            cur = []
        else:
            cur.append(i)
    parts.append(cur)
    assert [tok.decode(p) for p in parts] == docs
    assert tok.decode(ids) == EOT.join(docs)
    single = tok.encode_documents(["only one\nand a second line"])
    assert tok.eot_id not in single
    assert tok.decode(single) == "only one\nand a second line"


def test_bpe_byte_fragments_decode_as_escapes():
    tok = train("bpe")
    ids = tok.encode("🙂")
    assert len(ids) > 1, "the emoji should be split into byte pieces at this vocabulary size"
    assert tok.decode(ids) == "🙂"
    first = tok.decode(ids[:1])
    assert first.startswith("\\xf0"), first
    assert "\ufffd" not in first
    # No token of the whole vocabulary ever shows a replacement character.
    assert not any("\ufffd" in t for t in tok.token_texts)
    fragments = [t for t in tok.token_texts if "\\x" in t]
    assert fragments, "a byte-level vocabulary has tokens that are parts of characters"
    # A sequence cut in the middle of a character escapes only the dangling bytes.
    cut = tok.decode(tok.encode("a🙂")[:-1])
    assert cut.startswith("a\\xf0") and "\ufffd" not in cut


def test_bpe_vocab_size_is_respected():
    tok = TextTokenizer.train("bpe", TEXTS, 280)
    assert tok.vocab_size <= 280
    with pytest.raises(TuiGptError, match="257"):
        TextTokenizer.train("bpe", TEXTS, 100)


def test_char_unknown_characters_become_unk():
    tok = TextTokenizer.train("char", ["abc"])
    ids = tok.encode("abz")
    assert tok.decode(ids) == "ab<unk>"
    assert tok.is_special(ids[-1])


def test_word_tokenizer_spells_unseen_words_from_characters():
    tok = TextTokenizer.train("word", ["the cat sat on the mat"])
    assert tok.decode(tok.encode("the mast")) == "the mast"  # "mast" is not a word it saw


def test_word_tokenizer_round_trips_long_runs():
    text = "Title\n" + "-" * 201 + "\nBody text.\n"
    tok = TextTokenizer.train("word", [text])
    assert tok.decode(tok.encode(text)) == text


def test_unknown_kind_is_a_one_line_error():
    with pytest.raises(TuiGptError) as info:
        TextTokenizer.train("sentencepiece", TEXTS)
    assert "\n" not in str(info.value)
    assert "char" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\x00\x01garbage", b'{"model": {"type": "Unigram"}}'])
def test_loading_a_bad_tokenizer_file_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(TuiGptError) as info:
        TextTokenizer.load(path)
    assert "\n" not in str(info.value)
    assert "tokenizer.json" in str(info.value)


def test_visible_draws_whitespace():
    assert visible("a b\nc\td") == "a·b↵c→d"


def test_visible_draws_control_characters_as_escapes():
    # A form feed is a whole token of the char tokenizer on text with page breaks: it was an empty cell.
    assert visible("a\x0cb") == "a\\x0cb"
    assert visible("\x00\x1b[31m\x7f") == "\\x00\\x1b[31m\\x7f"
    # C1 controls and the line separators as \u escapes: never mistaken for the byte fragment \x85.
    assert visible("\x85\u2028\u2029") == "\\u0085\\u2028\\u2029"
    drawn = visible("".join(map(chr, range(0x3000))))
    assert all(unicodedata.category(c) not in ("Cc", "Zl", "Zp") for c in drawn)
