"""Compare checkpoints: two models on the same prompt and the same validation text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tui_gpt.engine.dataset import bits_per_byte
from tui_gpt.engine.model import GPT
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.nextword import WordLoss
from tui_gpt.probes.predict import Analysis, analyze, example_words, validation_loss


@dataclass(frozen=True)
class Side:
    name: str
    kind: str  # the tokenizer kind
    analysis: Analysis  # the prompt: top-k next tokens and per-token examples
    val_loss: float  # on fixed batches of the run's text, per token of this side's tokenizer
    val_bpb: float  # the same loss in bits per byte of that text: comparable across tokenizers
    words: list[WordLoss]  # the prompt by word: -log p(word | prefix), the sum of its tokens'


@dataclass(frozen=True)
class Comparison:
    this: Side
    other: Side
    token_texts: list[str]  # this run's id -> text
    same_tokens: bool  # both tokenizers are the same: per-token rows line up

    def word_pairs(self) -> list[tuple[WordLoss, WordLoss]]:
        """The prompt's words that both sides predicted whole, side by side, in order.

        Words are text, so they line up across tokenizers: both sides read the prompt's end, and the
        pairs run back from it while the words agree (a window's start may cut a word differently).
        """
        pairs = []
        for a, b in zip(reversed(self.this.words), reversed(self.other.words), strict=False):
            if a.text != b.text:
                break
            pairs.append((a, b))
        return [(a, b) for a, b in reversed(pairs) if not (math.isnan(a.nll) or math.isnan(b.nll))]


def compare(model: GPT, tokenizer: TextTokenizer, path: Path, prompt: str, sources: list[str], k: int) -> Comparison:
    """This run's model beside the checkpoint at `path`, on `prompt` and on the run's validation text."""
    from tui_gpt.engine.checkpoint import load_model
    from tui_gpt.engine.corpus import load_corpus
    from tui_gpt.engine.dataset import TokenData

    other, other_tok, _ = load_model(path)
    corpus = load_corpus(sources)
    sides = []
    for name, m, t in (("this run", model, tokenizer), (str(path), other, other_tok)):
        a = analyze(m, t, t.encode(prompt), k=k)
        data = TokenData.build(corpus, t)  # the run's text in this side's tokens
        loss = validation_loss(m, data.val)
        words = example_words(t, a.prediction.ids, a.examples)
        sides.append(Side(name, t.kind, a, loss, bits_per_byte(loss, data.val_bytes_per_token), words))
    return Comparison(sides[0], sides[1], tokenizer.token_texts, tokenizer.hf.to_str() == other_tok.hf.to_str())
