"""Token streams for training and validation, and random batches drawn from them.

The streams are read-only numpy arrays memory-mapped from the token cache (see tokencache):
a batch copies only its own windows, so a corpus of any size costs little memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tui_gpt import tokencache
from tui_gpt.corpus import Corpus
from tui_gpt.errors import TuiGptError
from tui_gpt.tokenizer import LINE_MAX, TextTokenizer

VAL_FRACTION = 0.1
MIN_TOKENS = 16
SAMPLE_TOKENS = 4_000_000  # statistics over a stream longer than this look at a spread sample of it

Ids = np.ndarray | torch.Tensor  # a 1-D stream of token ids


@dataclass
class TokenData:
    """The corpus as token ids: per document, the first 90% trains and the last 10% validates."""

    train: np.ndarray  # (N_train,) uint16 or uint32, memory-mapped
    val: np.ndarray  # (N_val,)

    @classmethod
    def build(
        cls,
        corpus: Corpus,
        tokenizer: TextTokenizer,
        progress: Callable[[int, int], None] | None = None,
    ) -> TokenData:
        """Tokenize `corpus` streaming, or map the cached ids of an earlier run on the same text.

        `progress` gets (bytes done, bytes in all).
        """
        dtype = tokenizer.dtype
        key = tokencache.cache_key(corpus.digest, tokenizer.hf.to_str(), VAL_FRACTION, LINE_MAX)
        total = corpus.size
        cached = tokencache.load(key, dtype)
        if cached is None:
            # Every token is at least one byte of text, plus an end-of-text per document.
            need = (total + 2 * len(corpus.documents)) * dtype.itemsize
            done = 0

            def counted(blocks: Iterator[tuple[str, bytes]]) -> Iterator[str]:
                nonlocal done
                for text, raw in blocks:
                    yield text
                    done += len(raw)
                    if progress:
                        progress(done, total)

            with tokencache.Writer(key, dtype, tokenizer.eot_id, VAL_FRACTION, need) as w:
                for doc in corpus.documents:
                    for part in tokenizer.encode_stream(counted(doc.blocks())):
                        w.add(part)
                    w.end_document()
                cached = w.commit()
        elif progress:
            progress(total, total)
        data = cls(*cached)
        if len(data.train) < MIN_TOKENS or len(data.val) < 2:
            raise TuiGptError(
                f"{corpus.name}: only {len(data.train) + len(data.val)} tokens; the text is too short to train on, "
                f"give it at least a few sentences"
            )
        return data

    def split(self, name: str) -> np.ndarray:
        return self.train if name == "train" else self.val


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


def windows(data: Ids, T: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every whole window of T ids of `data`, side by side, as batches of x (b, T) and y (b, T)."""
    n = (len(data) - 1) // T
    for first in range(0, n, batch_size):
        b = min(batch_size, n - first)
        w = ids(data, first * T, (first + b) * T + 1)
        yield w[:-1].view(b, T), w[1:].view(b, T)
