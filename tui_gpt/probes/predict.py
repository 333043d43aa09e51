"""Ask a trained model questions: next-token guesses, per-position losses, samples, baselines."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from tui_gpt.engine.model import GPT, KVCache
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.nextword import WordLoss, word_losses

if TYPE_CHECKING:
    from tui_gpt.engine.dataset import Ids


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


def top_guesses(last: torch.Tensor, tokenizer: TextTokenizer, k: int, temperature: float) -> list[Guess]:
    """The k likeliest next tokens from the last position's logits (V,), with probabilities at `temperature`."""
    probs = F.softmax(last / max(temperature, 1e-6), dim=-1)
    top = torch.topk(probs, min(k, last.numel()))
    texts = tokenizer.token_texts
    pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
    return [Guess(i, texts[i], p, last[i].item()) for p, i in pairs]


def _examples(logp: torch.Tensor, tgt: torch.Tensor) -> tuple[list[Example], torch.Tensor]:
    """Row t - 1 of log-probabilities `logp` (T-1, V) predicting `tgt[t - 1]`, as examples; and -nll (T-1,)."""
    tgt_logp = logp.gather(1, tgt[:, None])[:, 0]  # (T-1,)
    ranks = (logp > tgt_logp[:, None]).sum(dim=1) + 1  # (T-1,)
    rows = [
        Example(t + 1, int(tgt[t]), math.exp(lp), -lp, int(r))
        for t, (lp, r) in enumerate(zip(tgt_logp.tolist(), ranks.tolist(), strict=True))
    ]
    return rows, tgt_logp


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
    guesses = top_guesses(logits[-1], tokenizer, k, temperature)
    att = torch.stack([a[0] for a in attns]).float().cpu() if attns and ctx else None  # (L, nh, T, T)
    rows: list[Example] = []
    loss = math.nan
    if len(ctx) >= 2:
        rows, tgt_logp = _examples(F.log_softmax(logits[:-1], dim=-1), x[0, 1:])
        loss = float(-tgt_logp.mean())
    return Analysis(Prediction(ctx, dropped, guesses, att), rows, loss)


@torch.no_grad()
def target_prob(model: GPT, ids: list[int], target: int) -> float:
    """p(target | ids): the probability of one training example, `ids` -> `target`."""
    ctx, _ = context(ids, model.config.block_size)
    if model.training:
        model.eval()
    x = torch.tensor([ctx], dtype=torch.long, device=next(model.parameters()).device)
    logits, _, _ = model(x)
    return float(F.softmax(logits[0, -1].float(), dim=-1)[target])


@dataclass(frozen=True)
class Surprisal:
    """Every training example of a text, with the model's top guesses at each position."""

    ids: list[int]  # the tokens the model saw
    examples: list[Example]  # row t: ids[:t] predicting ids[t]
    top: list[list[tuple[int, float]]]  # top[t - 1]: (id, p) of the best guesses before token t
    words: list[WordLoss]  # the same tokens by word: -log p(word | prefix), NaN for a word that starts at ids[0]


def example_words(tokenizer: TextTokenizer, ids: list[int], examples: list[Example]) -> list[WordLoss]:
    """The examples of `ids` (row t: ids[:t] predicting ids[t]) grouped by word: each word's summed -log p."""
    nll = [math.nan] * len(ids)
    for e in examples:
        nll[e.position] = e.nll
    return word_losses(tokenizer, ids, nll)


@torch.no_grad()
def surprisal(model: GPT, tokenizer: TextTokenizer, ids: list[int], k: int = 8) -> Surprisal:
    """One forward pass over the last block_size of `ids`: examples and per-position top-k."""
    ctx, _ = context(ids, model.config.block_size)
    if len(ctx) < 2:
        return Surprisal(ctx, [], [], [])
    if model.training:
        model.eval()
    x = torch.tensor([ctx], dtype=torch.long, device=next(model.parameters()).device)
    logits = model(x)[0][0, :-1].float()  # (T-1, V)
    logp = F.log_softmax(logits, dim=-1)  # (T-1, V)
    rows, _ = _examples(logp, x[0, 1:])
    top = torch.topk(logp.exp(), min(k, logp.size(-1)), dim=-1)  # (T-1, k)
    guesses = [list(zip(i, p, strict=True)) for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)]
    return Surprisal(ctx, rows, guesses, example_words(tokenizer, ctx, rows))


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
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[int]:
    """Yield `n` sampled token ids after `ids`, one at a time; temperature 0 is greedy.

    Decodes incrementally with a KV cache while the sequence fits in block_size; the logits are
    those of the full forward over the last block_size tokens, as before the cache. `cancelled`
    (causal models) is asked between blocks: when it says yes, the pass raises model.Cancelled.
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    dev = next(model.parameters()).device
    if model.training:  # walking every module costs about a millisecond: only when needed
        model.eval()
    ids = list(ids)
    bs = model.config.block_size
    cache: KVCache | None = None  # the keys and values of ids[:-1], while they all fit in the window
    for _ in range(n):
        ctx, _ = context(ids, bs)
        if not model.config.causal:  # no cache without the mask: every step reads the whole window
            logits, _, _ = model(torch.tensor([ctx], dtype=torch.long, device=dev))
        elif cache is not None and len(ids) <= bs:  # one new token at the next position
            new = torch.tensor([ids[-1:]], dtype=torch.long, device=dev)
            logits, cache = model.forward_cached(new, cache, cancelled)
        else:
            # First step, or the window slid: every position shifted, so rebuild from the window.
            # Past block_size this is a full forward per token, exactly as without a cache.
            logits, cache = model.forward_cached(torch.tensor([ctx], dtype=torch.long, device=dev), None, cancelled)
        last = logits[0, -1].float().cpu()
        if temperature <= 0:
            nxt = int(last.argmax())
        else:  # as everywhere else, at least 1e-6: logits / 1e-300 overflow to inf, and softmax to NaN
            probs = F.softmax(_filter_logits(last / max(temperature, 1e-6), top_k, top_p), dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        ids.append(nxt)
        yield nxt


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
    from tui_gpt.engine.dataset import sample

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
def validation_loss(model: GPT, val: Ids, iters: int = 20, batch_size: int = 16, seed: int = 0) -> float:
    """Mean loss on `iters` fixed random batches of the validation stream `val`."""
    from tui_gpt.engine.dataset import get_batch

    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    if model.training:  # walking every module costs about a millisecond: only when needed
        model.eval()
    losses: list[float] = []
    for _ in range(iters):
        x, y = get_batch(val, batch_size, model.config.block_size, gen)
        _, loss, _ = model(x.to(dev), y.to(dev))
        losses.append(loss.item())
    return sum(losses) / len(losses)


@dataclass(frozen=True)
class TempRow:
    """One token under temperature: its logit, the logit divided by T, and the softmax of those."""

    id: int
    logit: float
    scaled: float
    prob: float


def temperature_table(logits: torch.Tensor, temperature: float, k: int) -> list[TempRow]:
    """The top-`k` tokens by logit of a (V,) vector, with logit / T and softmax(logits / T) over all V.

    A temperature of 0 or below is treated as 1e-6, as `probe.analyze` does: (nearly) all the
    probability goes to the top logit.
    """
    if logits.dim() != 1:
        raise ValueError(f"expected a (V,) logits vector, got shape {tuple(logits.shape)}")
    t = max(temperature, 1e-6)
    x = logits.detach().double().cpu()  # double: probabilities of far-behind tokens stay > 0 and sum to 1
    scaled = x / t
    probs = torch.softmax(scaled, dim=-1)
    # A stable sort breaks ties by id, so the table does not shuffle between redraws.
    order = torch.sort(x, descending=True, stable=True).indices[: max(0, k)]
    return [TempRow(int(i), float(x[i]), float(scaled[i]), float(probs[i])) for i in order]
