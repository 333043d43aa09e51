"""Token streams for training and validation, and random batches drawn from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tui_gpt.corpus import Corpus
from tui_gpt.errors import TuiGptError
from tui_gpt.tokenizer import TextTokenizer

VAL_FRACTION = 0.1
MIN_TOKENS = 16


@dataclass
class TokenData:
    """The corpus as token ids: per document, the first 90% trains and the last 10% validates."""

    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64

    @classmethod
    def build(
        cls,
        corpus: Corpus,
        tokenizer: TextTokenizer,
        progress: Callable[[int, int], None] | None = None,
    ) -> TokenData:
        train: list[int] = []
        val: list[int] = []
        total = len(corpus.documents)
        for i, doc in enumerate(corpus.documents):
            ids = tokenizer.encode_documents([doc.text])
            cut = len(ids) - int(len(ids) * VAL_FRACTION)
            for part, dest in ((ids[:cut], train), (ids[cut:], val)):
                if part:
                    if dest:
                        dest.append(tokenizer.eot_id)
                    dest.extend(part)
            if progress:
                progress(i + 1, total)
        if len(train) < MIN_TOKENS or len(val) < 2:
            raise TuiGptError(
                f"{corpus.name}: only {len(train) + len(val)} tokens; the text is too short to train on, "
                f"give it at least a few sentences"
            )
        return cls(torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long))

    def split(self, name: str) -> torch.Tensor:
        return self.train if name == "train" else self.val


def get_batch(
    data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows x (B, T) and their next-token targets y (B, T).

    T is block_size, or less when the stream is shorter than one block.
    """
    T = min(block_size, len(data) - 1)
    ix = torch.randint(len(data) - T, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + T] for i in ix.tolist()])
    y = torch.stack([data[i + 1 : i + 1 + T] for i in ix.tolist()])
    return x, y
