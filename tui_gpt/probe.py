"""Ask a trained model questions: next-token guesses, per-position losses, samples, baselines."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from tui_gpt.model import GPT
from tui_gpt.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from tui_gpt.dataset import Ids


@dataclass(frozen=True)
class Guess:
    id: int
    text: str
    prob: float
    logit: float


@dataclass(frozen=True)
class Prediction:
    """The model's view of one prefix: its next-token guesses and its attention."""

    ids: list[int]  # the tokens the model saw: the last block_size of the prefix
    dropped: int  # tokens cut from the front because the prefix is longer than the context
    guesses: list[Guess]
    attention: torch.Tensor | None  # (n_layer, n_head, T, T), or None for an empty prefix


@dataclass(frozen=True)
class Example:
    """One training example inside a text: the tokens before position t predict token t."""

    position: int
    target: int
    prob: float
    nll: float  # -log p(target), the cross-entropy of this example
    rank: int  # 1 = the model's top guess


def context(ids: list[int], block_size: int) -> tuple[list[int], int]:
    """The last `block_size` ids, and how many were dropped to fit."""
    dropped = max(0, len(ids) - block_size)
    return ids[dropped:], dropped


@dataclass(frozen=True)
class Analysis:
    """One forward pass over a prefix: its next-token guesses, its training examples, attention."""

    prediction: Prediction
    examples: list[Example]
    loss: float  # mean -log p over `examples`: the model's cross-entropy on this text


@torch.no_grad()
def analyze(
    model: GPT, tokenizer: TextTokenizer, ids: list[int], k: int = 10, temperature: float = 1.0, attention: bool = True
) -> Analysis:
    """Top-k next tokens after `ids` (probabilities at `temperature`), plus every example in them.

    Only the last `block_size` tokens are seen. Row t of the examples is the prefix
    ids[:t] predicting ids[t]; the mean of their -log p is exactly the cross-entropy loss
    the model reports for the same tokens.
    """
    ctx, dropped = context(ids, model.config.block_size)
    ctx_in = ctx or [tokenizer.eot_id]  # nothing typed: condition on a document start
    if model.training:  # walking every module costs about a millisecond: only when needed
        model.eval()
    x = torch.tensor([ctx_in], dtype=torch.long, device=next(model.parameters()).device)
    logits, _, attns = model(x, want_attn=attention)
    logits = logits[0].float()  # (T, V)
    last = logits[-1]  # (V,)
    probs = F.softmax(last / max(temperature, 1e-6), dim=-1)
    top = torch.topk(probs, min(k, last.numel()))
    texts = tokenizer.token_texts
    guesses = [
        Guess(i, texts[i], p, last[i].item()) for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
    att = torch.stack([a[0] for a in attns]).float().cpu() if attns and ctx else None  # (L, nh, T, T)
    rows: list[Example] = []
    loss = math.nan
    if len(ctx) >= 2:
        logp = F.log_softmax(logits[:-1], dim=-1)  # (T-1, V)
        tgt = x[0, 1:]  # (T-1,)
        tgt_logp = logp.gather(1, tgt[:, None])[:, 0]  # (T-1,)
        ranks = (logp > tgt_logp[:, None]).sum(dim=1) + 1  # (T-1,)
        rows = [
            Example(t + 1, int(tgt[t]), math.exp(lp), -lp, int(r))
            for t, (lp, r) in enumerate(zip(tgt_logp.tolist(), ranks.tolist(), strict=True))
        ]
        loss = float(-tgt_logp.mean())
    return Analysis(Prediction(ctx, dropped, guesses, att), rows, loss)


def predict(
    model: GPT, tokenizer: TextTokenizer, ids: list[int], k: int = 10, temperature: float = 1.0, attention: bool = True
) -> Prediction:
    """Top-k next tokens after `ids`, with probabilities at `temperature`, plus attention maps."""
    return analyze(model, tokenizer, ids, k, temperature, attention).prediction


def examples(model: GPT, tokenizer: TextTokenizer, ids: list[int]) -> tuple[list[Example], float]:
    """Every training example in the last block_size tokens of `ids`, and their mean loss."""
    a = analyze(model, tokenizer, ids, k=1, attention=False)
    return a.examples, a.loss


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k:
        v, _ = torch.topk(logits, min(top_k, logits.numel()))
        logits = logits.masked_fill(logits < v[-1], float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - F.softmax(sorted_logits, dim=-1) > top_p  # keep the token that crosses top_p
        logits = logits.clone()
        logits[order[drop]] = float("-inf")
    return logits


@torch.no_grad()
def sample(
    model: GPT,
    ids: list[int],
    n: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Iterator[int]:
    """Yield `n` sampled token ids after `ids`, one at a time; temperature 0 is greedy."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    dev = next(model.parameters()).device
    if model.training:  # walking every module costs about a millisecond: only when needed
        model.eval()
    ids = list(ids)
    for _ in range(n):
        ctx, _ = context(ids, model.config.block_size)
        logits, _, _ = model(torch.tensor([ctx], dtype=torch.long, device=dev))
        last = logits[0, -1].float().cpu()
        if temperature <= 0:
            nxt = int(last.argmax())
        else:
            probs = F.softmax(_filter_logits(last / temperature, top_k, top_p), dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        ids.append(nxt)
        yield nxt


@dataclass(frozen=True)
class Completion:
    """Ghost text: what greedy decoding would append to the typed text."""

    text: str  # exactly the characters that accepting would insert
    first: str  # the characters of the first token alone (what Tab inserts)


@torch.no_grad()
def complete(model: GPT, tokenizer: TextTokenizer, prefix: str, max_tokens: int = 8) -> Completion:
    """Greedy continuation of `prefix`, up to the end of the next word.

    Token healing: the last typed token may be a fragment (`" qu"`, or a trailing space)
    that the model rarely saw followed by more of the same word. So it is backed off and
    the model chooses among tokens that start with those characters; the ghost text is the
    rest of that token. This never adds or drops a space.
    """
    ids = tokenizer.encode(prefix) or [tokenizer.eot_id]  # nothing typed: a document start
    texts = tokenizer.token_texts
    pieces: list[str] = []
    if len(ids) >= 2 and tokenizer.kind != "char":
        tail = texts[ids[-1]]
        pred = predict(model, tokenizer, ids[:-1], k=tokenizer.vocab_size, attention=False)
        best = next((g for g in pred.guesses if g.text.startswith(tail) and not tokenizer.is_special(g.id)), None)
        if best is not None and best.text != tail:
            pieces.append(best.text[len(tail) :])
            ids = [*ids[:-1], best.id]
    for tok in sample(model, ids, max_tokens - len(pieces), temperature=0):
        if tokenizer.is_special(tok):
            break
        piece = texts[tok]
        if pieces and _starts_new_word(piece, "".join(pieces)):
            break
        pieces.append(piece)
    return Completion("".join(pieces), pieces[0] if pieces else "")


def _starts_new_word(piece: str, so_far: str) -> bool:
    """True when `piece` would begin a second word after the ghost text `so_far`."""
    word_started = so_far.strip() != ""
    return word_started and (piece[:1].isspace() or not (piece[:1].isalnum() or piece[:1] in "'-"))


@dataclass(frozen=True)
class Baselines:
    uniform: float  # ln V: knowing nothing
    unigram: float  # knowing only how common each token is
    bigram: float  # knowing only the previous token


def baselines(train: Ids, val: Ids, vocab_size: int) -> Baselines:
    """Cross-entropy on `val` of count-based models fitted on `train`.

    Unigram uses add-one smoothing; bigram interpolates with the unigram so unseen pairs
    keep a sensible probability. Pairs are counted sparsely, never as a V x V table.
    """
    from tui_gpt.dataset import sample

    V = vocab_size
    train, val = sample(train), sample(val)  # all of a small corpus, a spread sample of a large one
    uni = torch.bincount(train, minlength=V).double() + 1.0
    uni_p = uni / uni.sum()
    unigram = float(-uni_p[val].log().mean())
    pairs, counts = torch.unique(train[:-1] * V + train[1:], return_counts=True)
    want = val[:-1] * V + val[1:]
    pos = torch.searchsorted(pairs, want).clamp(max=len(pairs) - 1)
    seen = torch.where(pairs[pos] == want, counts[pos], torch.zeros_like(pos)).double()
    rows = torch.bincount(train[:-1], minlength=V).double()
    p = (seen + V * uni_p[val[1:]]) / (rows[val[:-1]] + V)
    return Baselines(math.log(V), unigram, float(-p.log().mean()))


@torch.no_grad()
def validation_loss(model: GPT, val: torch.Tensor, iters: int = 20, batch_size: int = 16, seed: int = 0) -> float:
    """Mean loss on `iters` fixed random batches of the validation stream `val`."""
    from tui_gpt.dataset import get_batch

    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    if model.training:  # walking every module costs about a millisecond: only when needed
        model.eval()
    losses = []
    for _ in range(iters):
        x, y = get_batch(val, batch_size, model.config.block_size, gen)
        _, loss, _ = model(x.to(dev), y.to(dev))
        losses.append(loss.item())
    return sum(losses) / len(losses)
