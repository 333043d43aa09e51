"""Heads that copy: previous-token and induction (prefix-matching) scores of every attention head.

The probe is a random token sequence repeated twice, after an end-of-text: `eot r r`. In the
second repeat a head that has learned induction attends to the token just after the current
token's earlier occurrence (Olsson et al., 2022, "In-context Learning and Induction Heads"),
which lets the model copy what came next last time. A previous-token head attends to i - 1.

The repeat length varies over the probe (at least MIN_PERIOD): with one fixed period, a head that
attends a fixed distance back by position alone would score as an induction head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tui_gpt.engine.model import GPT
from tui_gpt.engine.tokenizer import TextTokenizer

MIN_PERIOD = 4  # at period 2 the induction target is i - 1: a previous-token head would score too
MAX_PERIOD = 64  # longer repeats cost more and show nothing new
PERIODS = 6  # repeat lengths in one probe, spread between the two
ROWS = 8  # random sequences per repeat length


@dataclass(frozen=True)
class Probe:
    """Batches of `eot r r`, one per repeat length: (period, ids (ROWS, 2 * period + 1))."""

    batches: list[tuple[int, torch.Tensor]]


@dataclass(frozen=True)
class HeadScores:
    previous_token: torch.Tensor  # (n_layer, n_head): mean attention to position i - 1
    induction: torch.Tensor  # (n_layer, n_head): mean attention, in the second repeat, to the token after
    # the current token's earlier occurrence
    icl: float  # loss on the second repeat minus loss on the first (nats; negative: it copies)

    def best_induction(self) -> tuple[int, int, float]:
        """(layer from 1, head from 1, score) of the head with the highest induction score."""
        flat = int(self.induction.argmax())
        layer, head = divmod(flat, self.induction.size(1))
        return layer + 1, head + 1, float(self.induction[layer, head])


def periods(block_size: int, n: int = PERIODS) -> list[int]:
    """Up to `n` repeat lengths, spread evenly over [MIN_PERIOD, the longest two of which fit with the eot]."""
    top = min(MAX_PERIOD, (block_size - 1) // 2)
    if top < MIN_PERIOD:
        raise ValueError(f"block_size {block_size} is too short for a repeat of {MIN_PERIOD} tokens twice")
    return sorted({round(MIN_PERIOD + (top - MIN_PERIOD) * i / max(1, n - 1)) for i in range(n)})


def make_probe(tokenizer: TextTokenizer, block_size: int, seed: int = 0, rows: int = ROWS) -> Probe:
    """Random sequences of ordinary tokens (never a special one), each repeated twice after an end-of-text."""
    ordinary = torch.tensor([i for i in range(tokenizer.vocab_size) if not tokenizer.is_special(i)])
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for p in periods(block_size):
        r = ordinary[torch.randint(len(ordinary), (rows, p), generator=gen)]
        eot = torch.full((rows, 1), tokenizer.eot_id)
        batches.append((p, torch.cat([eot, r, r], dim=1)))
    return Probe(batches)


def previous_token_score(att: torch.Tensor) -> torch.Tensor:
    """Mean attention from each position i >= 1 to i - 1, over positions and the batch.

    att: (B, nh, T, T) attention weights (rows sum to 1). Returns (nh,). A head that always attends
    to the previous token scores 1; a uniform causal head attends 1 / (i + 1) to it at position i.
    """
    T = att.size(-1)
    i = torch.arange(1, T)
    return att[:, :, i, i - 1].mean(dim=(0, 2))


def induction_score(att: torch.Tensor, period: int, start: int = 1) -> torch.Tensor:
    """Mean attention, over the second repeat, to the token after the current token's earlier occurrence.

    att: (B, nh, T, T) on sequences whose tokens from `start` on repeat with `period`: position i in
    the second repeat (i >= start + period) holds the token of i - period, followed by i - period + 1.
    Returns (nh,).
    """
    T = att.size(-1)
    i = torch.arange(start + period, T)
    return att[:, :, i, i - period + 1].mean(dim=(0, 2))


@torch.no_grad()
def head_scores(model: GPT, probe: Probe) -> HeadScores:
    """Every head's previous-token and induction scores on `probe`, and the probe's in-context gain."""
    if model.training:
        model.eval()
    dev = next(model.parameters()).device
    L, H = model.config.n_layer, model.config.n_head
    prev, ind = torch.zeros(L, H), torch.zeros(L, H)
    first, second = [], []
    for period, ids in probe.batches:
        x = ids.to(dev)
        logits, _, attns = model(x, want_attn=True)
        for layer, att in enumerate(attns):
            att = att.float().cpu()
            prev[layer] += previous_token_score(att)
            ind[layer] += induction_score(att, period)
        # -log p of each token from its prefix; targets at 1.. (the first repeat's first token has no clue)
        nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), x[:, 1:], reduction="none").cpu()
        first.append(nll[:, 1:period].mean())  # predicting r[1:] in the first repeat
        second.append(nll[:, period + 1 :].mean())  # predicting r[1:] in the second: can be copied
    n = len(probe.batches)
    icl = float(torch.stack(second).mean() - torch.stack(first).mean())
    return HeadScores(prev / n, ind / n, icl)
