"""The tokenizer view: what each token id is, and how long a text is under each tokenizer kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tui_gpt.engine.tokenizer import KINDS, TextTokenizer


@dataclass(frozen=True)
class TokenInfo:
    """One token as the user sees it."""

    id: int
    text: str  # TextTokenizer.token_text: byte fragments escaped as \xNN
    special: bool  # <|endoftext|> or <unk>
    fragment: bool  # only part of a UTF-8 character (byte-level BPE)


def train_tokenizers(
    corpus_texts: Sequence[str], vocab_sizes: Mapping[str, int] | None = None
) -> dict[str, TextTokenizer]:
    """One tokenizer of each kind trained on `corpus_texts`; `vocab_sizes` overrides the default per kind."""
    sizes = vocab_sizes or {}
    return {kind: TextTokenizer.train(kind, list(corpus_texts), sizes.get(kind)) for kind in KINDS}


def token_counts(
    text: str, corpus_texts: Sequence[str], vocab_sizes: Mapping[str, int] | None = None
) -> dict[str, int]:
    """How many tokens `text` takes under a char, a BPE and a word tokenizer trained on `corpus_texts`."""
    return {kind: len(tok.encode(text)) for kind, tok in train_tokenizers(corpus_texts, vocab_sizes).items()}


def describe_ids(tokenizer: TextTokenizer, ids: Sequence[int]) -> list[TokenInfo]:
    """Text and flags of each token in `ids`."""
    out = []
    for i in ids:
        try:
            # Judged on the bytes, not on the escaped text: real text may contain a literal "\x".
            tokenizer.to_bytes([i]).decode("utf-8")
            fragment = False
        except UnicodeDecodeError:
            fragment = True
        out.append(TokenInfo(i, tokenizer.token_text(i), tokenizer.is_special(i), fragment))
    return out
