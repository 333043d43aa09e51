"""Heads that copy: previous-token and induction (prefix-matching) scores of every attention head.

The probe is a random token sequence repeated twice, after an end-of-text: `eot r r`. In the
second repeat a head that has learned induction attends to the token just after the current
token's earlier occurrence (Olsson et al., 2022, "In-context Learning and Induction Heads"),
which lets the model copy what came next last time. A previous-token head attends to i - 1.

The in-context score asks the same of real text: the val loss late in the context minus early in it
(Olsson et al.'s token 500 minus token 50). `tui-gpt heads` and the trainer's live readings (#28) both
score here, one implementation.

The repeat length varies over the probe (at least MIN_PERIOD): with one fixed period, a head that
attends a fixed distance back by position alone would score as an induction head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from tui_gpt.engine.dataset import Ids
from tui_gpt.engine.dataset import ids as id_slice
from tui_gpt.engine.model import GPT
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.settings import in_context_positions, in_context_words

MIN_PERIOD = 4  # at period 2 the induction target is i - 1: a previous-token head would score too
MAX_PERIOD = 64  # longer repeats cost more and show nothing new
PERIODS = 6  # repeat lengths in one probe, spread between the two
ROWS = 8  # random sequences per repeat length
IN_CONTEXT_WINDOWS = 64  # val windows the in-context score averages over (its noise: docs/heads.md)
IN_CONTEXT_TOKENS = 16384  # at most this many tokens in them: a long context gets fewer windows


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


def make_probe(
    tokenizer: TextTokenizer,
    block_size: int,
    seed: int = 0,
    rows: int = ROWS,
    n_periods: int = PERIODS,
    device: torch.device | str = "cpu",
) -> Probe:
    """Random sequences of ordinary tokens (never a special one), each repeated twice after an end-of-text."""
    ordinary = torch.tensor([i for i in range(tokenizer.vocab_size) if not tokenizer.is_special(i)])
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for p in periods(block_size, n_periods):
        r = ordinary[torch.randint(len(ordinary), (rows, p), generator=gen)]
        eot = torch.full((rows, 1), tokenizer.eot_id)
        batches.append((p, torch.cat([eot, r, r], dim=1).to(device)))
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
    """Every head's previous-token and induction scores on `probe`, and the probe's in-context gain.

    In eval mode (no dropout); a model in training mode is put back in it.
    """
    training = model.training
    model.eval()
    try:
        return _scores(model, probe)
    finally:
        model.train(training)


def _scores(model: GPT, probe: Probe) -> HeadScores:
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


def val_windows(val: Ids, block_size: int, n: int = IN_CONTEXT_WINDOWS) -> torch.Tensor | None:
    """Up to `n` windows of block_size + 1 val ids, spread evenly over the split (fixed: the same every time).

    Shorter windows where the split is shorter than a context; None where it holds under two ids.
    """
    T = min(block_size, len(val) - 1)
    if T < 1:
        return None
    n = max(1, min(n, IN_CONTEXT_TOKENS // T, len(val) - T))
    starts = np.linspace(0, len(val) - T - 1, n).round().astype(np.int64)
    return torch.stack([id_slice(val, int(s), int(s) + T + 1) for s in starts])


@torch.no_grad()
def in_context_score(model: GPT, windows: torch.Tensor | None) -> tuple[float | None, str]:
    """The in-context score on val `windows` (B, T + 1), and what it measures in words.

    Olsson et al.'s: the mean loss at token 500 minus the mean loss at token 50; where the context is
    shorter, over its last tenth minus around a tenth of the way in (`settings.in_context_positions`).
    Negative: later tokens are predicted better, from what came earlier in the context. None where
    the windows are too short for two positions.
    """
    T = 0 if windows is None else windows.size(1) - 1
    positions = in_context_positions(T)
    if windows is None or positions is None:
        return None, in_context_words(T)
    late, early = positions
    training = model.training
    model.eval()
    try:
        # Positions 0..late[-1] see only what is before them: the rest of the window is never run.
        logits, _, _ = model(windows[:, : late[-1] + 1].to(next(model.parameters()).device))
        at = [*late, *early]
        targets = windows[:, [i + 1 for i in at]].to(logits.device)
        nll = F.cross_entropy(logits[:, at].float().transpose(1, 2), targets, reduction="none")
    finally:
        model.train(training)
    return float(nll[:, : len(late)].mean() - nll[:, len(late) :].mean()), in_context_words(T)


def reading(scores: HeadScores, in_context: float | None) -> dict[str, Any] | None:
    """A `TrainEvent.heads` dict of one reading; None where any number is NaN or infinite (a diverging model)."""
    out = {
        "previous_token": scores.previous_token.tolist(),
        "induction": scores.induction.tolist(),
        "icl": scores.icl,
        "in_context": in_context,
    }
    numbers = [*scores.previous_token.flatten().tolist(), *scores.induction.flatten().tolist(), scores.icl]
    if in_context is not None:
        numbers.append(in_context)
    return out if all(math.isfinite(v) for v in numbers) else None


@dataclass
class LiveHeads:
    """What the trainer scores its heads on, made once per run: the repeat probe and the val windows."""

    probe: Probe | None  # None where the context is too short for a repeat of MIN_PERIOD twice
    windows: torch.Tensor | None

    @classmethod
    def make(cls, tokenizer: TextTokenizer, block_size: int, val: Ids, device: torch.device) -> LiveHeads:
        try:
            probe: Probe | None = make_probe(tokenizer, block_size, seed=0, device=device)
        except ValueError:  # the context is too short
            probe = None
        windows = val_windows(val, block_size)
        return cls(probe, None if windows is None else windows.to(device))

    def read(
        self, model: GPT, autocast: Callable[[], AbstractContextManager[object]] = nullcontext
    ) -> dict[str, Any] | None:
        """One reading of every head and the in-context score, or None where it cannot be made.

        The attention is read in float32, as `tui-gpt heads` reads it; the in-context score is a val loss,
        taken under `autocast` as the trainer's evaluations are (in bfloat16 on this CPU it costs 2.5 times
        less, docs/heads.md).
        """
        if self.probe is None:
            return None
        scores = head_scores(model, self.probe)
        with autocast():
            in_context, _ = in_context_score(model, self.windows)
        return reading(scores, in_context)
