"""Corpora of any size: streamed tokenizing gives today's ids, long lines stay bounded, the token cache is sound."""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tui_gpt.engine import tokencache
from tui_gpt.engine.corpus import Corpus, Document, load_corpus
from tui_gpt.engine.dataset import VAL_FRACTION, TokenData, get_batch
from tui_gpt.engine.session import open_run
from tui_gpt.engine.tokenizer import KINDS, LINE_MAX, TextTokenizer, stream_lines
from tui_gpt.engine.trainer import Trainer
from tui_gpt.errors import TuiGptError
from tui_gpt.link.protocol import Saved
from tui_gpt.link.worker import TrainerLoop

# Shared beside the repository where it is there; synthetic text stands in where it is not.
SHAKESPEARE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
MIXED = (
    "First line, plain.\r\nSecond: café naïve, déjà vu!\n\n\tTabs  and   spaces   \n"
    "Emoji 🙂👍 and 你好世界。\rOld Mac line\x85next line\u2028sep\n   trailing   \n"
) * 40
WORDS = ["the", "fox", "jumps", "over", "a", "lazy", "dog,", "and", "42", "café", "🙂", "—", "'s", "don't"]


def normal_text() -> str:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")[:150_000] + MIXED
    return MIXED * 20


def todays_ids(tok: TextTokenizer, text: str) -> list[int]:
    """How 85535b0 encoded a document: str.splitlines, then the Rust tokenizer line by line."""
    return [i for ids in tok.encode_batch(text.splitlines(keepends=True)) for i in ids]


def todays_splits(tok: TextTokenizer, texts: list[str]) -> tuple[list[int], list[int]]:
    train: list[int] = []
    val: list[int] = []
    for text in texts:
        ids = todays_ids(tok, text)
        cut = len(ids) - int(len(ids) * VAL_FRACTION)
        for part, dest in ((ids[:cut], train), (ids[cut:], val)):
            if part:
                if dest:
                    dest.append(tok.eot_id)
                dest.extend(part)
    return train, val


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.fixture(scope="module")
def text() -> str:
    return normal_text()


@pytest.fixture(scope="module", params=KINDS)
def tok(request, text) -> TextTokenizer:
    return TextTokenizer.train(request.param, [text], 400 if request.param == "bpe" else 2000)


# ---- streaming gives today's ids ------------------------------------------------------------


@pytest.mark.parametrize("size", [7, 1000, 1 << 20])
def test_streamed_ids_equal_todays_whole_text_ids(tok, text, size):
    # Pieces of 7 characters cut inside lines, inside \r\n and inside words: the lines come out whole.
    got = np.concatenate(list(tok.encode_stream(pieces(text, size))))
    assert got.dtype == np.uint16
    assert got.tolist() == todays_ids(tok, text)


def test_char_table_lookup_equals_the_rust_tokenizer(text):
    tok = TextTokenizer.train("char", [text[: len(text) // 2]])  # the second half may hold unknown chars
    lines = [*text.splitlines(keepends=True), "unseen: ☃ ✓\n"]
    assert tok.encode_lines(lines).tolist() == [i for e in tok.hf.encode_batch(lines) for i in e.ids]


def test_stream_lines_are_str_splitlines():
    text = "a\r\nb\rc\nd\x0be\x1cf\u2028g\r" * 50 + "end"
    for size in (1, 2, 3, 5, 64):
        assert list(stream_lines(pieces(text, size))) == text.splitlines(keepends=True)


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_cutting_a_long_line_of_words_changes_no_token(kind, text):
    tok = TextTokenizer.train(kind, [text], 400 if kind == "bpe" else 2000)
    rnd = random.Random(0)
    seps = [" ", " ", " ", "  ", "\t", " \t ", "   "]
    line = "".join(rnd.choice(WORDS) + rnd.choice(seps) for _ in range(60_000))  # ~300 KB, no newline
    assert len(line) > 4 * LINE_MAX
    cut = list(stream_lines(pieces(line, 50_000)))
    assert len(cut) > 4 and max(map(len, cut)) <= LINE_MAX and "".join(cut) == line
    got = np.concatenate(list(tok.encode_stream(pieces(line, 50_000)))).tolist()
    assert got == tok.encode(line)  # the whole line at once, as the Rust side would see it uncut


def test_a_line_with_no_space_is_cut_at_the_bound():
    line = "x" * (3 * LINE_MAX + 5)
    cut = list(stream_lines(pieces(line, 10_000)))
    assert [len(c) for c in cut] == [LINE_MAX, LINE_MAX, LINE_MAX, 5]


LONG_LINE = """
import random, resource, sys
from tui_gpt.engine.tokenizer import TextTokenizer
kind = sys.argv[1]
tok = TextTokenizer.train(kind, ["The quick brown fox jumps over the lazy dog. " * 50], 300 if kind == "bpe" else None)
rnd = random.Random(0)
line = " ".join(rnd.choice(["alpha", "beta", "fox", "dog", "the", "a"]) for _ in range(500_000))[:2_000_000]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = sum(len(a) for a in tok.encode_stream([line[i : i + 1_000_000] for i in range(0, len(line), 1_000_000)]))
print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_2mb_line_with_no_newline_tokenizes_in_bounded_memory(kind):
    # Encoded whole, this line grows the Rust tokenizer's peak by 470-700 MB; cut, by about 120 MB at most.
    out = subprocess.run([sys.executable, "-c", LONG_LINE, kind], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n, grew_mb = map(int, out.stdout.split())
    assert n > 1_000_000
    assert grew_mb < 250


# ---- token data from files ---------------------------------------------------------------------


def write_docs(folder: Path, texts: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(texts):
        (folder / f"{i:02d}.txt").write_text(t, encoding="utf-8", newline="")
    return [str(folder)]


@pytest.mark.parametrize("mapped", [False, True])
def test_token_data_from_files_equals_todays_splits(cache, tmp_path, tok, text, monkeypatch, mapped):
    if mapped:  # as a cache over tokencache.PRIVATE_BYTES is
        monkeypatch.setattr(tokencache, "PRIVATE_BYTES", 0)
    texts = [text[:100_000], "\ufeffA short one.\n", text[100_000:]]
    corpus = load_corpus(write_docs(tmp_path / "docs", texts))
    train, val = todays_splits(tok, [t.removeprefix("\ufeff") for t in texts])
    for data in (TokenData.build(corpus, tok), TokenData.build(corpus, tok)):  # built, then read back
        assert data.train.tolist() == train and data.val.tolist() == val
        assert isinstance(data.train, np.memmap) == mapped and (data.source is not None) == mapped
        assert data.train.dtype == np.uint16 and not data.train.flags.writeable


def test_loading_scans_chars_and_alphabet(tmp_path):
    texts = ["héllo\nworld\n", "☃ snow\r\n"]
    corpus = load_corpus(write_docs(tmp_path / "d", texts))
    assert corpus.chars == sum(map(len, texts))
    assert corpus.alphabet == "".join(sorted(set("".join(texts))))
    assert corpus.texts == texts


def test_sampled_tokenizers_still_know_every_char(tmp_path):
    body = "the fox and the dog went to the river.\n" * 3000
    (tmp_path / "big.txt").write_text(body + "a rare ☃ at the very end\n", encoding="utf-8")
    corpus = load_corpus([str(tmp_path / "big.txt")])
    sample = corpus.sample_texts(limit=20_000)
    assert sum(map(len, sample)) <= 20_000 and all(t.endswith("\n") for t in sample)
    assert all(line in body for t in sample for line in t.splitlines())  # whole lines only
    one_line = tmp_path / "one.txt"
    one_line.write_text("word " * 10_000, encoding="utf-8")  # no line break: pieces of the line
    assert sum(map(len, load_corpus([str(one_line)]).sample_texts(limit=20_000))) > 15_000
    for kind in ("char", "word"):
        tok = TextTokenizer.train(kind, [] if kind == "char" else sample, alphabet=corpus.alphabet)
        assert tok.decode(tok.encode("☃")) == "☃" and tok.hf.token_to_id("☃") is not None


def test_open_run_reports_reading_training_and_tokenizing(tmp_path, make_spec):
    (tmp_path / "t.txt").write_text(MIXED, encoding="utf-8")
    seen: dict[str, list[tuple[int, int]]] = {}
    open_run(
        make_spec([str(tmp_path / "t.txt")], tokenizer="bpe"), lambda w, d, t: seen.setdefault(w, []).append((d, t))
    )
    assert list(seen) == ["reading text", "training tokenizer", "tokenizing"]
    for events in seen.values():
        assert all(0 <= d <= t for d, t in events) and events[-1][0] == events[-1][1]


# ---- the cache -----------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("TUI_GPT_CACHE", str(folder))
    return folder


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.tokens"))


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TUI_GPT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tokencache.cache_dir() == tmp_path / "xdg" / "tui-gpt" / "tokens"
    monkeypatch.setenv("TUI_GPT_CACHE", str(tmp_path / "mine"))
    assert tokencache.cache_dir() == tmp_path / "mine"


def test_second_open_hits_the_cache_and_changes_invalidate_it(cache, tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_text(text[:50_000], encoding="utf-8")
    corpus = load_corpus([str(path)])
    tok = TextTokenizer.train("char", corpus.texts)
    first = TokenData.build(corpus, tok)
    [entry] = entries(cache)
    inode = entry.stat().st_ino
    again = TokenData.build(load_corpus([str(path)]), tok)
    assert entries(cache) == [entry] and entry.stat().st_ino == inode  # read, not rewritten
    assert again.train.tolist() == first.train.tolist() and again.val.tolist() == first.val.tolist()
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]

    path.write_text(text[:50_000][::-1], encoding="utf-8")  # same size and letters, new content (any text)
    corpus = load_corpus([str(path)])  # the old one's scan no longer matches the file
    changed = TokenData.build(corpus, tok)
    assert len(entries(cache)) == 2 and changed.train.tolist() != first.train.tolist()

    other = TextTokenizer.train("bpe", corpus.texts, 300)
    TokenData.build(corpus, other)
    assert len(entries(cache)) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "empty"])
def test_a_damaged_cache_file_is_rebuilt_not_trusted(cache, tiny_file, damage):
    corpus = load_corpus([str(tiny_file)])
    tok = TextTokenizer.train("char", corpus.texts)
    good = TokenData.build(corpus, tok)
    want = (good.train.tolist(), good.val.tolist())
    del good
    [entry] = entries(cache)
    raw = bytearray(entry.read_bytes())
    if damage == "flip":
        raw[tokencache.HEADER_BYTES + 10] ^= 0x01
    elif damage == "truncate":
        raw = raw[:-3]
    elif damage == "header":
        raw[:8] = b"garbage!"
    else:
        raw = bytearray()
    entry.write_bytes(bytes(raw))
    again = TokenData.build(load_corpus([str(tiny_file)]), tok)
    assert (again.train.tolist(), again.val.tolist()) == want
    assert entry.read_bytes() != bytes(raw)


@pytest.mark.parametrize("mapped", [False, True])
def test_a_cache_with_a_valid_checksum_but_ids_beyond_the_vocabulary_is_rebuilt(
    cache, tiny_file, make_spec, monkeypatch, mapped
):
    # Issue #15: such a file passed every check, then each run died with an IndexError in the embedding.
    if mapped:
        monkeypatch.setattr(tokencache, "PRIVATE_BYTES", 0)
    run = open_run(make_spec([str(tiny_file)]))
    want = (run.data.train.tolist(), run.data.val.tolist())
    del run
    [entry] = entries(cache)
    raw = bytearray(entry.read_bytes())
    magic, itemsize, n_train, n_val, _ = tokencache.HEADER.unpack(raw[: tokencache.HEADER.size])
    ids = np.frombuffer(raw, dtype=np.uint16, offset=tokencache.HEADER_BYTES).copy()
    ids[:n_train] = 60_000  # far beyond a char vocabulary of a few dozen
    crc = zlib.crc32(ids.tobytes())
    header = tokencache.HEADER.pack(magic, itemsize, n_train, n_val, crc).ljust(tokencache.HEADER_BYTES, b"\0")
    entry.write_bytes(header + ids.tobytes())
    again = open_run(make_spec([str(tiny_file)]))
    assert (again.data.train.tolist(), again.data.val.tolist()) == want
    again.trainer.train_step()
    assert tokencache.HEADER.unpack(entry.read_bytes()[: tokencache.HEADER.size])[4] != crc


def test_ids_are_uint16_when_the_vocabulary_fits_else_uint32(cache):
    small = "".join(chr(0x4E00 + i) for i in range(3000)) + "\n"
    big = "".join(chr(0x4E00 + i) for i in range(20_000)) + "".join(chr(0x20000 + i) for i in range(50_000)) + "\n"
    for text, dtype in ((small, np.uint16), (big, np.uint32)):
        corpus = Corpus("cjk", (Document("cjk", text * 2),))
        tok = TextTokenizer.train("char", corpus.texts)
        assert tok.dtype == dtype and (tok.vocab_size > 1 << 16) == (dtype == np.uint32)
        data = TokenData.build(corpus, tok)
        assert data.train.dtype == dtype
        assert tok.decode(data.train[: len(text)].tolist()) == text


def test_no_room_on_disk_is_one_line(cache, one_line_error):
    with pytest.raises(TuiGptError) as info:
        tokencache.check_space(cache, need=5 * 10**9, free=10**9)
    assert "5.0 GB" in one_line_error(info.value, str(cache))


def test_batches_from_the_memory_map_equal_batches_from_a_tensor(cache, tiny_file):
    corpus = load_corpus([str(tiny_file)])
    tok = TextTokenizer.train("char", corpus.texts)
    data = TokenData.build(corpus, tok)
    as_tensor = torch.from_numpy(np.array(data.train, dtype=np.int64))
    for T in (8, 10_000):
        a = get_batch(data.train, 4, T, torch.Generator().manual_seed(3))
        b = get_batch(as_tensor, 4, T, torch.Generator().manual_seed(3))
        assert all(x.dtype == torch.long and torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_text_overwritten_while_tokenized_never_serves_a_later_run_the_other_text(
    cache, tmp_path, monkeypatch, tiny_text, one_line_error
):
    # Issue #15 row 6: the text is rewritten in place after the tokenizer has read its first block.
    path = tmp_path / "t.txt"
    original = tiny_text * 10  # several blocks of 1000 bytes
    other = "".join(reversed(original))  # same characters, so the char tokenizer knows them all
    path.write_text(original, encoding="utf-8")
    corpus = load_corpus([str(path)])
    tok = TextTokenizer.train("char", [], alphabet=corpus.alphabet)
    blocks = Document.blocks
    read: list[bytes] = []

    def rewritten_after_the_first_block(self, size=1000):
        for i, (text, raw) in enumerate(blocks(self, size)):
            read.append(raw)
            yield text, raw
            if i == 0:
                path.write_text(other, encoding="utf-8")  # same inode: the open file reads on into it

    with monkeypatch.context() as m:
        m.setattr(Document, "blocks", rewritten_after_the_first_block)
        with pytest.raises(TuiGptError) as info:
            TokenData.build(corpus, tok)
    assert "changed while" in one_line_error(info.value, str(path))
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]
    # What was tokenized is stored under the key of the bytes tokenized: a later run on them maps it.
    [entry] = entries(cache)
    tokenized = b"".join(read).decode("utf-8")
    assert tokenized != original
    inode = entry.stat().st_ino
    hit = TokenData.build(Corpus("as read", (Document("as read", tokenized),)), tok)
    assert entries(cache) == [entry] and entry.stat().st_ino == inode
    assert (hit.train.tolist(), hit.val.tolist()) == todays_splits(tok, [tokenized])

    path.write_text(original, encoding="utf-8")  # the original is back: a later run trains on it
    again = TokenData.build(load_corpus([str(path)]), tok)
    assert (again.train.tolist(), again.val.tolist()) == todays_splits(tok, [original])


BUILD = """
import sys
import numpy as np
from tui_gpt.engine import tokencache
w = tokencache.Writer("ab" * 20, np.dtype(np.uint16), 0, 0.1, 0)
w.add(np.arange(100, dtype=np.uint16))
print(w.tmp.name, flush=True)
sys.stdin.readline()
w.end_document()
w.commit()
"""


def test_a_killed_cache_build_leaves_nothing_behind_and_a_live_one_is_left_alone(cache, tiny_file):
    # Issue #15 row 12: a killed build left its .tokens.tmp-* and .val.tmp-* files forever.
    def build() -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", BUILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert ".tokens.tmp-" in p.stdout.readline()  # its temp files exist
        return p

    def temps() -> list[str]:
        return sorted(p.name for p in cache.iterdir() if ".tmp-" in p.name)

    killed, live = build(), build()
    killed.kill()
    killed.wait()
    assert len(temps()) == 4
    (cache / "notes.txt.tmp-1").write_text("not ours")
    tok = TextTokenizer.train("char", [tiny_file.read_text(encoding="utf-8")])
    TokenData.build(load_corpus([str(tiny_file)]), tok)  # the next run, while another process builds
    assert len(temps()) == 5  # nothing removed: any of them may be the live build's
    live.communicate("\n", timeout=60)
    assert live.returncode == 0 and (cache / f"{'ab' * 20}.tokens").is_file()

    TokenData.build(load_corpus([str(tiny_file)]), tok)  # a cache hit, with no build live
    assert temps() == ["notes.txt.tmp-1"]


def test_a_cache_lock_held_too_long_is_one_line(cache, monkeypatch, one_line_error):
    cache.mkdir()
    monkeypatch.setattr(tokencache, "LOCK_WAIT_SECONDS", 0.2)
    with tokencache._folder_lock(cache, exclusive=True), pytest.raises(TuiGptError) as info:
        tokencache.Writer("cd" * 20, np.dtype(np.uint16), 0, 0.1, 0)
    one_line_error(info.value, str(cache))
    assert [p.name for p in cache.iterdir()] == [tokencache.LOCK]


# ---- a cache file cut short under a run (issue #15 row 14: SIGBUS, exit 135) ---------------------


@pytest.fixture
def pages_of_ids(tmp_path, tiny_text) -> Path:
    """A text whose ids span many pages: reading a mapped page wholly past a file's end is what raises SIGBUS."""
    path = tmp_path / "pages.txt"
    path.write_text(tiny_text * 30, encoding="utf-8")  # 27 KB: about 12 pages of uint16 ids
    return path


def test_a_cache_file_cut_between_its_check_and_its_mapping_is_rebuilt(cache, tiny_file, monkeypatch):
    monkeypatch.setattr(tokencache, "PRIVATE_BYTES", 0)
    corpus = load_corpus([str(tiny_file)])
    tok = TextTokenizer.train("char", corpus.texts)
    good = TokenData.build(corpus, tok)
    want = (good.train.tolist(), good.val.tolist())
    del good
    read = tokencache._read

    def read_then_cut(f, length, dtype, keep):
        out = read(f, length, dtype, keep)
        os.truncate(f.name, tokencache.HEADER_BYTES + 10)
        return out

    with monkeypatch.context() as m:
        m.setattr(tokencache, "_read", read_then_cut)
        assert tokencache.load(entries(cache)[0].stem, tok.dtype, tok.vocab_size) is None
    assert entries(cache) == []
    again = TokenData.build(load_corpus([str(tiny_file)]), tok)
    assert (again.train.tolist(), again.val.tolist()) == want


def test_a_small_cache_is_read_into_memory_so_cutting_its_file_cannot_touch_the_run(cache, pages_of_ids, make_spec):
    run = open_run(make_spec([str(pages_of_ids)]))
    assert run.data.source is None and not isinstance(run.data.train, np.memmap)
    before = run.data.train.tolist()
    [entry] = entries(cache)
    os.truncate(entry, tokencache.HEADER_BYTES)
    for _ in range(3):
        run.trainer.train_step()
    assert run.data.train.tolist() == before
    again = open_run(make_spec([str(pages_of_ids)]))  # the next run finds the cut file and rebuilds it
    assert again.data.train.tolist() == before and entry.stat().st_size > tokencache.HEADER_BYTES


CUT_AT_STEP_5 = """
import os, sys
from tui_gpt.commands import cli
from tui_gpt.engine import tokencache
from tui_gpt.engine.trainer import Trainer

tokencache.PRIVATE_BYTES = 0  # mapped, as a cache over 256 MB is
step = Trainer.train_step

def cut_at_step_5(self):
    if self.step == 5:
        os.truncate(self.data.source.path, tokencache.HEADER_BYTES + 8)
    return step(self)

Trainer.train_step = cut_at_step_5
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_mapped_cache_cut_under_a_train_run_is_one_line_and_the_run_saves(cache, tmp_path, pages_of_ids):
    out = tmp_path / "run"
    argv = [sys.executable, "-c", CUT_AT_STEP_5, "train", str(pages_of_ids), "--steps", "40", "--out", str(out)]
    argv += ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "16", "--batch-size", "4"]
    argv += ["--eval-interval", "0", "--dtype", "float32", "--threads", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr  # not 135 (SIGBUS) or -7
    [line] = [ln for ln in r.stderr.splitlines() if "cut to" in ln]
    assert "while this run read it" in line and f"saved step 5 to {out}" in line
    assert "Traceback" not in r.stderr and r.stdout.strip() == str(out)
    assert json.loads((out / "trainer.json").read_text())["step"] == 5


def test_a_mapped_cache_cut_under_the_app_s_trainer_saves_and_stops_in_one_line(
    cache, tmp_path, pages_of_ids, make_spec, monkeypatch, one_line_error
):
    monkeypatch.setattr(tokencache, "PRIVATE_BYTES", 0)
    step = Trainer.train_step

    def cut_at_step_5(self):
        if self.step == 5:
            os.truncate(self.data.source.path, tokencache.HEADER_BYTES + 8)
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", cut_at_step_5)
    events: queue.Queue = queue.Queue()
    loop = TrainerLoop(make_spec([str(pages_of_ids)]), queue.Queue(), events, out=str(tmp_path / "run"))
    with pytest.raises(TuiGptError) as info:
        loop.loop()
    assert f"saved step 5 to {tmp_path / 'run'}" in one_line_error(info.value, "cut to")
    sent = []
    while not events.empty():
        sent.append(events.get())
    assert [ev.step for ev in sent if isinstance(ev, Saved)] == [5]
