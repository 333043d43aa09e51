"""Loading text: built-in corpora, folders, and every bad input as one line that names the file."""

from __future__ import annotations

import pytest
import torch

from tui_gpt.engine.corpus import BUILTINS, FABLE_WEIGHT, Corpus, Document, combined_digest, load_corpus
from tui_gpt.engine.dataset import TokenData, get_batch
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.errors import TuiGptError

BINARY = bytes(range(256)) * 4  # has NUL bytes


def missing(tmp):
    return [str(tmp / "nope.txt")], "nope.txt"


def empty_dir(tmp):
    (tmp / "emptydir").mkdir()
    return [str(tmp / "emptydir")], "emptydir"


def hidden_only_dir(tmp):
    (tmp / "hiddendir").mkdir()
    (tmp / "hiddendir" / ".secret.txt").write_text("hidden text", encoding="utf-8")
    return [str(tmp / "hiddendir")], "hiddendir"


def binary_only_dir(tmp):
    folder = tmp / "bindir"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(BINARY)
    (folder / "sub" / "b.dat").write_bytes(b"caf\xe9 au lait")
    return [str(folder)], "bindir"


def empty_file(tmp):
    (tmp / "empty.txt").write_bytes(b"")
    return [str(tmp / "empty.txt")], "empty.txt"


def whitespace_file(tmp):
    (tmp / "blank.txt").write_text("  \n\t\n   \r\n", encoding="utf-8")
    return [str(tmp / "blank.txt")], "blank.txt"


def binary_file(tmp):
    (tmp / "data.bin").write_bytes(BINARY)
    return [str(tmp / "data.bin")], "data.bin"


def latin1_file(tmp):
    (tmp / "latin1.txt").write_bytes(b"caf\xe9")
    return [str(tmp / "latin1.txt")], "latin1.txt"


def builtin_mixed_with_file(tmp):
    (tmp / "ok.txt").write_text("some text", encoding="utf-8")
    return [str(tmp / "ok.txt"), "python-docs"], "python-docs"


BAD_INPUTS = [
    missing,
    empty_dir,
    hidden_only_dir,
    binary_only_dir,
    empty_file,
    whitespace_file,
    binary_file,
    latin1_file,
    builtin_mixed_with_file,
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[f.__name__ for f in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_file(tmp_path, case, one_line_error):
    sources, name = case(tmp_path)
    with pytest.raises(TuiGptError) as info:
        load_corpus(sources)
    one_line_error(info.value, name)


def test_non_utf8_message_says_where(tmp_path):
    sources, _ = latin1_file(tmp_path)
    with pytest.raises(TuiGptError, match=r"0xe9 at offset 3"):
        load_corpus(sources)


def test_corpus_over_the_size_cap(tmp_path, tiny_file):
    with pytest.raises(TuiGptError) as info:
        load_corpus([str(tiny_file)], max_bytes=100)
    msg = str(info.value)
    assert "\n" not in msg
    assert "more than the 100 B tui-gpt trains on" in msg
    # Under the cap the same file loads.
    assert load_corpus([str(tiny_file)], max_bytes=1 << 30).documents


def test_corpus_too_large_names_the_file(tiny_file, one_line_error):
    with pytest.raises(TuiGptError) as info:
        load_corpus([str(tiny_file)], max_bytes=100)
    one_line_error(info.value, "tiny.txt")


def test_folder_is_read_recursively_and_skips_non_text(tmp_path):
    folder = tmp_path / "texts"
    (folder / "deeper").mkdir(parents=True)
    (folder / "b.txt").write_text("second file", encoding="utf-8")
    (folder / "deeper" / "a.md").write_bytes("\ufefffirst, with a BOM: café".encode())
    (folder / "deeper" / "image.png").write_bytes(BINARY)
    (folder / "old.txt").write_bytes(b"caf\xe9")
    (folder / "blank.txt").write_text("   \n", encoding="utf-8")
    (folder / ".hidden.txt").write_text("never read", encoding="utf-8")
    corpus = load_corpus([str(folder)])
    texts = sorted(corpus.texts)
    assert texts == ["first, with a BOM: café", "second file"]
    assert len(corpus.skipped) == 3
    assert not any(".hidden" in s for s in corpus.skipped)
    assert corpus.chars == sum(len(t) for t in texts)


def test_several_files(tmp_path, tiny_file, tiny_text):
    other = tmp_path / "other.txt"
    other.write_text("Another document.", encoding="utf-8")
    corpus = load_corpus([str(tiny_file), str(other)])
    assert corpus.texts == [tiny_text, "Another document."]
    assert "+ 1 more" in corpus.name


def test_default_corpus_is_the_bundled_stories_with_the_fables_weighed_up():
    corpus = load_corpus()
    assert corpus == load_corpus(["stories"])
    stories = [d for d in corpus.documents if d.name.startswith("stories/")]
    fables = [d for d in corpus.documents if d.name.startswith("fables/")]
    assert len(stories) >= 100 and all(d.text.strip() and d.repeat == 1 for d in stories)
    assert [d.text for d in fables] == load_corpus(["fables"]).texts
    assert all(d.repeat == FABLE_WEIGHT > 1 for d in fables)
    assert sum(d.size for d in stories) > 1_000_000  # the bar: at least 1 MB of varied text
    assert corpus.digest != combined_digest(d.scanned.digest for d in corpus.documents), "the weight is in the digest"


def test_a_repeated_document_trains_more_and_validates_once(tmp_path):
    """Its training part goes in `repeat` times; its validation part once, so val stays a sample of the text."""
    text = "".join(f"line {i} of a document that is long enough to split.\n" for i in range(40))
    plain = Corpus("plain", (Document("a", text),))
    weighed = Corpus("weighed", (Document("a", text, repeat=3),))
    tok = TextTokenizer.train("char", [text])
    once, thrice = TokenData.build(plain, tok), TokenData.build(weighed, tok)
    assert list(thrice.val) == list(once.val)
    part = list(once.train)
    assert list(thrice.train) == [*part, tok.eot_id, *part, tok.eot_id, *part]
    assert weighed.digest != plain.digest


def test_the_stories_validation_split_is_not_a_copy_of_training_lines():
    """Whole lines of the validation text (a tenth of every document, at its end) are not in the training text."""
    corpus = load_corpus(["stories"])
    tok = TextTokenizer.train("char", corpus.sample_texts())
    data = TokenData.build(corpus, tok)
    train_lines = {line.strip() for line in tok.decode(list(data.train)).splitlines()}
    val_lines = [line.strip() for line in tok.decode(list(data.val)).splitlines() if len(line.strip()) >= 40]
    copied = [line for line in val_lines if line in train_lines]
    assert len(val_lines) > 100
    assert len(copied) <= len(val_lines) // 100, copied[:5]


def test_python_docs_corpus_loads():
    assert "python-docs" in BUILTINS
    corpus = load_corpus(["python-docs"])
    assert len(corpus.documents) > 10
    assert all(d.text.strip() for d in corpus.documents)
    assert corpus.chars > 100_000
    assert any("def" in d.text for d in corpus.documents)


# ---- token data ---------------------------------------------------------------------------


def test_token_data_splits_each_document():
    corpus = load_corpus(["fables"])
    tok = TextTokenizer.train("char", corpus.texts)
    data = TokenData.build(corpus, tok)
    n_doc_tokens = sum(len(tok.encode_documents([t])) for t in corpus.texts)
    # Every token lands in one split; an end-of-text token separates documents within each split.
    n_docs = len(corpus.documents)
    assert len(data.train) + len(data.val) == n_doc_tokens + 2 * (n_docs - 1)
    assert 0.05 < len(data.val) / (len(data.train) + len(data.val)) < 0.15
    assert int((data.train == tok.eot_id).sum()) == n_docs - 1
    assert data.split("train") is data.train and data.split("val") is data.val


def test_token_data_too_short_is_one_line(one_line_error):
    corpus = Corpus("short.txt", (Document("short.txt", "Hi."),))
    tok = TextTokenizer.train("char", corpus.texts)
    with pytest.raises(TuiGptError) as info:
        TokenData.build(corpus, tok)
    one_line_error(info.value, "short.txt")


def test_get_batch_targets_are_inputs_shifted():
    data = torch.arange(100)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(data, 5, 8, g)
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y, x + 1)
    # A stream shorter than one block gives shorter windows, still shifted by one.
    x, y = get_batch(torch.arange(6), 3, 8, g)
    assert x.shape == (3, 5) and torch.equal(y, x + 1)
    # Same seed, same batches.
    a = get_batch(data, 4, 8, torch.Generator().manual_seed(1))
    b = get_batch(data, 4, 8, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0])
