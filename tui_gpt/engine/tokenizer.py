"""Character, byte-level BPE and word tokenizers, all Hugging Face `tokenizers` underneath.

Each is trained on the corpus in seconds and saved as one `tokenizer.json`. Decoding never
hides bytes: a byte-level token that is only part of a UTF-8 character shows as `\\xNN`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from tui_gpt.engine.savedir import CAPS, read_capped, read_json
from tui_gpt.errors import TuiGptError

EOT = "<|endoftext|>"
UNK = "<unk>"
KINDS = ("char", "bpe", "word")
DEFAULT_VOCAB = {"bpe": 512, "word": 4096}
# GPT-2's split: words carry their leading space, runs of whitespace stay whole.
# Pieces are capped at 64 characters so that WordPiece (which gives up on longer words)
# always finds one.
WORD_SPLIT = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}{1,64}| ?\p{N}{1,64}| ?[^\s\p{L}\p{N}]{1,64}|\s{1,64}(?!\S)|\s{1,64}"
# Marks a word piece that continues a word; a private-use character never seen in real text.
CONTINUE = "\ue000"
# Lines longer than this are cut before tokenizing, so no single line can exhaust memory.
LINE_MAX = 64 * 1024
# Unicode White_Space, as the Rust regex's \s: a cut just before the last whitespace of a run that
# a non-space follows is a boundary of every pre-tokenizer here, so it cannot change any token.
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SAFE_CUT = re.compile(f"[{_WS}](?=[^{_WS}])")
# A tokenizer.json's own regular expressions run on the text: one that backtracks past its limit panics.
ENCODE_FAILED = "the tokenizer failed on this text"
ENCODE_BATCH_CHARS = 1 << 20  # lines handed to the Rust side at once: bounds its per-token bookkeeping


def _byte_decoder() -> dict[str, int]:
    """Invert GPT-2's byte -> printable-character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_BYTES = _byte_decoder()


@contextmanager
def rust_errors(what: str, where: str = "") -> Iterator[None]:
    """The Rust tokenizer's errors as one line, "where: what (why)": its plain Exceptions and its panics.

    A panic (a regular expression that backtracks past its limit, say) is a pyo3 PanicException,
    a BaseException: caught by name, as pyo3 does not export its class.
    """
    prefix = f"{where}: " if where else ""
    try:
        yield
    except TuiGptError as exc:
        raise TuiGptError(f"{prefix}{exc}") from None
    except BaseException as exc:
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:80]
        raise TuiGptError(f"{prefix}{what} ({why})") from None


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """GPT-2's merges.txt, parsed as the Rust reader does: "#version" lines skipped, then one "a b" per line."""
    try:
        lines = read_capped(path, CAPS["merges.txt"]).decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise TuiGptError(f"{path}: not a readable merges.txt (not UTF-8)") from None
    if lines[-1] == "":
        lines.pop()
    merges: list[tuple[str, str]] = []
    for n, line in enumerate(lines, 1):
        if line.startswith("#version"):
            continue
        parts = line.removesuffix("\r").split(" ")
        if len(parts) != 2:
            raise TuiGptError(f"{path}: line {n} is not a merge (two tokens and one space)")
        merges.append((parts[0], parts[1]))
    return merges


class TextTokenizer:
    """A trained tokenizer of one kind, with honest decoding."""

    def __init__(self, hf: Tokenizer) -> None:
        self.hf = hf
        model_type = type(hf.model).__name__
        kind = {"WordLevel": "char", "BPE": "bpe", "WordPiece": "word"}.get(model_type)
        if kind is None:
            raise TuiGptError(f"unsupported tokenizer model {model_type}")
        self.kind: str = kind
        eot_id = hf.token_to_id(EOT)
        if eot_id is None:
            raise TuiGptError(f"tokenizer has no {EOT} token")
        self.eot_id: int = eot_id

    # ---- training -------------------------------------------------------
    @classmethod
    def train(
        cls, kind: str, texts: Sequence[str], vocab_size: int | None = None, alphabet: str | None = None
    ) -> TextTokenizer:
        """Train a tokenizer of `kind` on `texts` (one string per document, or a sample of a large corpus).

        `alphabet`, when given, is every character of the whole corpus: the char and word
        tokenizers then cover text the sample missed.
        """
        if kind not in KINDS:
            raise TuiGptError(f"unknown tokenizer {kind!r}: choose one of {', '.join(KINDS)}")
        if alphabet is not None:
            chars = sorted(set(alphabet).union(*map(set, texts)))
        else:
            chars = sorted(set().union(*map(set, texts)))
        if kind == "char":
            vocab = {tok: i for i, tok in enumerate([EOT, UNK, *chars])}
            hf = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
            hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        elif kind == "bpe":
            size = vocab_size or DEFAULT_VOCAB["bpe"]
            if size < 257:
                raise TuiGptError(f"--vocab-size {size} is too small for byte-level BPE: use at least 257")
            hf = Tokenizer(models.BPE())
            hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            hf.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=size,
                special_tokens=[EOT],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
            hf.train_from_iterator(texts, trainer=trainer)
        else:
            size = vocab_size or DEFAULT_VOCAB["word"]
            split = pre_tokenizers.Split(Regex(WORD_SPLIT), "isolated")
            counts: Counter[str] = Counter()
            for text in texts:
                counts.update(piece for piece, _ in split.pre_tokenize_str(text))
            base = [EOT, UNK, *chars, *(CONTINUE + c for c in chars)]
            words = [w for w, _ in counts.most_common() if len(w) > 1]
            vocab = {tok: i for i, tok in enumerate(base + words[: max(0, size - len(base))])}
            hf = Tokenizer(
                models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUE, max_input_chars_per_word=100)
            )
            hf.pre_tokenizer = split
        return cls(hf)

    # ---- persistence ----------------------------------------------------
    def save(self, path: Path) -> None:
        self.hf.save(str(path))

    @classmethod
    def load(cls, path: Path) -> TextTokenizer:
        """The tokenizer.json at `path`, read only if a regular file within its cap (FileNotFoundError if missing)."""
        try:
            text = read_capped(path, CAPS["tokenizer.json"]).decode("utf-8")
        except UnicodeDecodeError:
            raise TuiGptError(f"{path}: not a readable tokenizer.json (not UTF-8)") from None
        with rust_errors("not a readable tokenizer.json", where=str(path)):
            return cls(Tokenizer.from_str(text)).check_ids()

    @classmethod
    def load_pretrained(cls, folder: Path, kind: str = "gpt2") -> TextTokenizer:
        """The tokenizer of a Hugging Face model folder: `tokenizer.json`, else GPT-2's `vocab.json` + `merges.txt`.

        A byte-level BPE is of kind `kind`; the char and word kinds (tui-gpt exports) keep theirs.
        """
        if (folder / "tokenizer.json").exists():
            tok = cls.load(folder / "tokenizer.json")
        elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
            vocab = read_json(folder / "vocab.json", "missing")
            merges = _read_merges(folder / "merges.txt")
            with rust_errors("unreadable vocab.json/merges.txt", where=str(folder)):
                hf = Tokenizer(models.BPE(vocab, merges))
                hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
                hf.decoder = decoders.ByteLevel()
                tok = cls(hf).check_ids()
        else:
            raise TuiGptError(f"{folder}: no tokenizer.json (or vocab.json + merges.txt) next to the model")
        if tok.kind in ("char", "word"):
            return tok
        tokens = [t for t in tok.hf.get_vocab() if t not in (EOT, UNK)]
        if tok.kind != "bpe" or any(ch not in _BYTES for t in tokens for ch in t):
            raise TuiGptError(f"{folder}: the tokenizer is not GPT-2's byte-level BPE")
        tok.kind = kind
        return tok

    def check_ids(self) -> TextTokenizer:
        """Itself, if its ids are 0..vocab_size-1, one per token: a larger id would index past the model's tables."""
        ids = set(self.hf.get_vocab().values())
        n = self.vocab_size
        if len(ids) != n or max(ids, default=-1) != n - 1:
            raise TuiGptError(f"its ids are not 0..{n - 1}, one per token (the largest is {max(ids, default=-1)})")
        return self

    def pad_to(self, n: int) -> None:
        """Give ids up to `n` a token, for a model whose vocabulary is padded past its tokenizer's.

        The pads are special tokens (`<|pad_N|>`): never produced from ordinary text, and saved
        with the tokenizer, so every id the model can predict has a text.
        """
        if n > self.vocab_size:
            self.hf.add_special_tokens([f"<|pad_{i}|>" for i in range(self.vocab_size, n)])
            for name in ("_pieces", "token_texts", "byte_lengths"):
                self.__dict__.pop(name, None)

    # ---- encoding -------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        with rust_errors(ENCODE_FAILED):
            return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        with rust_errors(ENCODE_FAILED):
            return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        return np.dtype(np.uint16 if self.vocab_size <= 1 << 16 else np.uint32)

    @cached_property
    def _char_table(self) -> np.ndarray | None:
        """For the char tokenizer: id per code point (the last slot, UNK, for all beyond), else None."""
        if self.kind != "char" or self.hf.get_added_tokens_decoder():
            return None
        vocab = self.hf.get_vocab()
        unk = vocab[UNK]
        singles = {ord(t): i for t, i in vocab.items() if len(t) == 1}
        table = np.full(max(singles, default=0) + 2, unk, dtype=self.dtype)
        for cp, i in singles.items():
            table[cp] = i
        return table

    def encode_lines(self, lines: list[str]) -> np.ndarray:
        """Ids of `lines` joined (each line tokenized alone), as an array of `dtype`."""
        table = self._char_table
        if table is not None:  # the char tokenizer is a table lookup: do it in numpy, same ids
            cps = np.frombuffer("".join(lines).encode("utf-32-le"), dtype="<u4")
            return table[np.minimum(cps, len(table) - 1)]
        ids = self.encode_batch(lines)
        return np.fromiter(chain.from_iterable(ids), dtype=self.dtype, count=sum(map(len, ids)))

    def encode_stream(self, pieces: Iterable[str]) -> Iterator[np.ndarray]:
        """Ids of a text given in pieces, cut anywhere: the same ids as `encode_documents([text])`
        for text whose lines fit in LINE_MAX, in memory bounded by the piece size."""
        batch: list[str] = []
        size = 0
        for line in stream_lines(pieces):
            batch.append(line)
            size += len(line)
            if size >= ENCODE_BATCH_CHARS:
                yield self.encode_lines(batch)
                batch, size = [], 0
        if batch:
            yield self.encode_lines(batch)

    def encode_documents(self, texts: Iterable[str]) -> list[int]:
        """Encode documents and join them with the end-of-text token."""
        out: list[int] = []
        for i, text in enumerate(texts):
            if i:
                out.append(self.eot_id)
            # Encode by lines: the Rust side then runs in parallel and in bounded memory.
            for ids in self.encode_batch(list(split_long(text.splitlines(keepends=True)))):
                out.extend(ids)
        return out

    # ---- decoding -------------------------------------------------------
    @cached_property
    def _pieces(self) -> list[bytes | str]:
        """Per id: raw bytes (byte-level BPE) or text (char, word) that the token stands for."""
        pieces: list[bytes | str] = []
        for i in range(self.vocab_size):
            tok = self.hf.id_to_token(i) or ""
            if tok in (EOT, UNK):
                pieces.append(tok)
            elif self.kind in ("bpe", "gpt2"):  # byte-level: each character stands for one byte
                pieces.append(bytes(_BYTES[ch] for ch in tok))
            elif self.kind == "word":
                pieces.append(tok[1:] if tok.startswith(CONTINUE) else tok)
            else:
                pieces.append(tok)
        return pieces

    @cached_property
    def byte_lengths(self) -> np.ndarray:
        """Per id, the UTF-8 bytes of text it stands for (int64): what bits per byte divides by.

        An end-of-text or unknown token counts as one byte: it stands for one break or one
        character, and so the char tokenizer on ASCII text has one byte per token, always.
        """
        return np.array(
            [1 if p in (EOT, UNK) else len(p if isinstance(p, bytes) else p.encode("utf-8")) for p in self._pieces],
            dtype=np.int64,
        )

    def to_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw UTF-8 bytes that `ids` stand for."""
        buf = bytearray()
        for i in ids:
            p = self._pieces[i]
            buf += p if isinstance(p, bytes) else p.encode("utf-8")
        return bytes(buf)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; bytes that are not whole UTF-8 characters show as `\\xNN`."""
        return self.to_bytes(ids).decode("utf-8", errors="backslashreplace")

    def token_text(self, i: int) -> str:
        """The text of one token alone, byte fragments escaped."""
        return self.decode([i])

    @cached_property
    def token_texts(self) -> list[str]:
        return [self.token_text(i) for i in range(self.vocab_size)]

    def is_special(self, i: int) -> bool:
        return self._pieces[i] in (EOT, UNK)


def split_long(lines: Iterable[str], limit: int = LINE_MAX) -> Iterator[str]:
    """`lines`, with any longer than `limit` characters cut into pieces of at most that.

    A cut goes just before the last whitespace of a run followed by a non-space, which no
    tokenizer here joins across; only a piece with no such place is cut at `limit` itself.
    """
    for line in lines:
        start = 0
        while len(line) - start > limit:
            cut = _cut(line, start, limit)
            yield line[start:cut]
            start = cut
        yield line[start:] if start else line


def _cut(line: str, start: int, limit: int) -> int:
    last = None
    for m in _SAFE_CUT.finditer(line, start + 1, start + limit + 1):
        last = m.start()
    return last if last is not None and last > start else start + limit


def stream_lines(pieces: Iterable[str], limit: int = LINE_MAX) -> Iterator[str]:
    """The lines of the text given as `pieces` (split as str.splitlines(keepends=True) does),
    long ones cut by `split_long`; memory is bounded by a piece plus `limit`."""
    carry = ""
    for piece in pieces:
        if not piece:
            continue
        lines = (carry + piece).splitlines(keepends=True)
        carry = lines.pop()  # may go on in the next piece (a line, or the \n of a \r\n)
        yield from split_long(lines, limit)
        if len(carry) > 2 * limit:  # a very long line: give out what cannot change any more
            start = 0
            while len(carry) - start > 2 * limit:
                cut = _cut(carry, start, limit)
                yield carry[start:cut]
                start = cut
            carry = carry[start:]
    if carry:
        yield from split_long([carry], limit)
