"""Token streams for training and validation, and random batches drawn from them.

The streams are read-only numpy arrays from the token cache (see tokencache): a small cache in
memory, a large one memory-mapped, so that a batch copies only its own windows and a corpus of
any size costs little memory. Before reading a mapped stream, `TokenData.check` it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tui_gpt.engine import tokencache
from tui_gpt.engine.corpus import Corpus, Document, combined_digest
from tui_gpt.engine.tokenizer import LINE_MAX, TextTokenizer
from tui_gpt.errors import TuiGptError

VAL_FRACTION = 0.1
MIN_TOKENS = 16
SAMPLE_TOKENS = 4_000_000  # statistics over a stream longer than this look at a spread sample of it

Ids = np.ndarray | torch.Tensor  # a 1-D stream of token ids


@dataclass
class TokenData:
    """The corpus as token ids: per document, the first 90% trains and the last 10% validates."""

    train: np.ndarray  # (N_train,) uint16 or uint32, read-only
    val: np.ndarray  # (N_val,)
    source: tokencache.Source | None = None  # the cache file they are mapped from, if they are
    val_bytes_per_token: float = math.nan  # UTF-8 bytes of text per validation token (bits_per_byte)

    @classmethod
    def build(
        cls,
        corpus: Corpus,
        tokenizer: TextTokenizer,
        progress: Callable[[int, int], None] | None = None,
    ) -> TokenData:
        """Tokenize `corpus` streaming, or read the cached ids of an earlier run on the same text.

        `progress` gets (bytes done, bytes in all).
        """
        dtype = tokenizer.dtype
        key = _key(corpus.digest, tokenizer)
        total = corpus.size
        cached = tokencache.load(key, dtype, tokenizer.vocab_size)
        if cached is None:
            # Every token is at least one byte of text, plus an end-of-text per document.
            need = sum((d.size + 2) * d.repeat for d in corpus.documents) * dtype.itemsize
            done = 0

            def counted(blocks: Iterator[tuple[str, bytes]], hash_bytes: Callable[[bytes], object]) -> Iterator[str]:
                nonlocal done
                for text, raw in blocks:
                    hash_bytes(raw)  # the very bytes tokenized: a file rewritten since its scan shows here
                    yield text
                    done += len(raw)
                    if progress:
                        progress(done, total)

            digests: list[bytes] = []
            changed: Document | None = None
            with tokencache.Writer(key, dtype, tokenizer.eot_id, VAL_FRACTION, need) as w:
                for doc in corpus.documents:
                    h = hashlib.sha256()
                    try:
                        for part in tokenizer.encode_stream(counted(doc.blocks(), h.update)):
                            w.add(part)
                    except UnicodeDecodeError:  # it was UTF-8 when scanned
                        raise _changed(doc) from None
                    w.end_document(doc.repeat)
                    digests += [h.digest()] * doc.repeat
                    if changed is None and digests[-1] != doc.scanned.digest:
                        changed = doc
                # Stored under the key of the bytes tokenized, so a later run on the scanned text never gets them.
                cached = w.commit(_key(combined_digest(digests), tokenizer))
            if changed is not None:
                raise _changed(changed)
        elif progress:
            progress(total, total)
        data = cls(*cached)
        data.val_bytes_per_token = bytes_per_token(data.val, tokenizer)
        if len(data.train) < MIN_TOKENS or len(data.val) < 2:
            raise TuiGptError(
                f"{corpus.name}: only {len(data.train) + len(data.val)} tokens; the text is too short to train on, "
                f"give it at least a few sentences"
            )
        return data

    def split(self, name: str) -> np.ndarray:
        return self.train if name == "train" else self.val

    def check(self) -> None:
        """Raise tokencache.Cut (one line) if the file the ids are mapped from was cut short: reading
        past its end would kill the process with SIGBUS. Call it before each read of a batch."""
        if self.source is not None:
            self.source.check()


def bytes_per_token(data: Ids, tokenizer: TextTokenizer) -> float:
    """Mean UTF-8 bytes of text per token of `data` (over a spread sample of a long stream), as
    `tokenizer.byte_lengths` counts them."""
    ids = sample(data).numpy()
    if not len(ids):
        return math.nan
    counts = np.bincount(ids, minlength=tokenizer.vocab_size)
    return float(counts @ tokenizer.byte_lengths[: len(counts)]) / len(ids)


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """A mean loss in nats per token as bits per byte of text: total nats / total bytes / ln 2, as
    nanochat's val_bpb. Comparable across tokenizers, where the loss per token is not."""
    return loss / math.log(2) / bytes_per_token


def bpb_text(value: float | None) -> str:
    """The text " · 2.7284 bpb", to follow a val loss, or nothing when the bits per byte are not known."""
    return "" if value is None else f" · {value:.4f} bpb"


def _key(corpus_digest: str, tokenizer: TextTokenizer) -> str:
    return tokencache.cache_key(corpus_digest, tokenizer.hf.to_str(), VAL_FRACTION, LINE_MAX)


def _changed(doc: Document) -> TuiGptError:
    return TuiGptError(
        f"{doc.name}: changed while it was being tokenized, so nothing trained on it; "
        "run again once nothing writes to it"
    )


def ids(data: Ids, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """data[start:stop] as a new int64 tensor, whatever `data` is stored as."""
    part = data[start:stop]
    if isinstance(part, torch.Tensor):
        return part.long()
    return torch.from_numpy(np.asarray(part, dtype=np.int64))


def sample(data: Ids, limit: int = SAMPLE_TOKENS, pieces: int = 64) -> torch.Tensor:
    """All of `data` as int64 if it has at most `limit` ids, else `pieces` runs of it spread evenly."""
    n = len(data)
    if n <= limit:
        return ids(data)
    run = limit // pieces
    return torch.cat([ids(data, s, s + run) for s in np.linspace(0, n - run, pieces).astype(np.int64).tolist()])


def get_batch(
    data: Ids, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows x (B, T) and their next-token targets y (B, T), int64.

    T is block_size, or less when the stream is shorter than one block.
    """
    T = min(block_size, len(data) - 1)
    ix = torch.randint(len(data) - T, (batch_size,), generator=generator)
    if isinstance(data, torch.Tensor):
        w = torch.stack([data[i : i + T + 1] for i in ix.tolist()]).long()
    else:
        w = torch.from_numpy(np.asarray(data[ix.numpy()[:, None] + np.arange(T + 1)], dtype=np.int64))
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()  # (B, T) each


def windows(
    data: Ids, T: int, batch_size: int, check: Callable[[], None] | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every whole window of T ids of `data`, side by side, as batches of x (b, T) and y (b, T);
    `check` is called before each batch is read (TokenData.check)."""
    n = (len(data) - 1) // T
    for first in range(0, n, batch_size):
        b = min(batch_size, n - first)
        if check is not None:
            check()
        w = ids(data, first * T, (first + b) * T + 1)
        yield w[:-1].view(b, T), w[1:].view(b, T)
