"""The lab's engine: memorization spans, run hints, surprisal colours, tokenizer and temperature tables, exports.

Pure functions over token ids, loss histories and logits, so the app shows them and the tests check them
without a screen.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
import torch

from tui_gpt.probe import Example
from tui_gpt.tokenizer import KINDS, TextTokenizer
from tui_gpt.trainer import TrainConfig

# ---- 1. memorization ------------------------------------------------------------------------------------------

# Two polynomial hashes modulo primes below 2**31: each product stays below 2**62, so int64 never overflows,
# and the pair makes a 62-bit key. Every hit is still checked against the text, so a collision cannot lie.
_P1, _B1 = 2_147_483_647, 911_382_323
_P2, _B2 = 2_147_483_629, 972_663_749


def _window_keys(x: torch.Tensor, n: int) -> torch.Tensor:
    """Hash key of every length-`n` window of the 1-D int64 tensor `x` (len(x) - n + 1 keys)."""
    m = x.numel() - n + 1
    h1 = torch.zeros(m, dtype=torch.long)
    h2 = torch.zeros(m, dtype=torch.long)
    for j in range(n):  # n vectorized passes instead of a Python loop over every window
        col = x[j : j + m] + 1
        h1 = (h1 * _B1 + col) % _P1
        h2 = (h2 * _B2 + col) % _P2
    return h1 * _P2 + h2


def _as_ids(ids: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
    if isinstance(ids, np.ndarray):  # a token stream, e.g. memory-mapped uint16: one copy, not a list
        return torch.from_numpy(np.asarray(ids, dtype=np.int64))
    t = ids.detach().cpu() if isinstance(ids, torch.Tensor) else torch.tensor(list(ids), dtype=torch.long)
    if t.dim() != 1:
        raise ValueError(f"expected a 1-D sequence of token ids, got shape {tuple(t.shape)}")
    return t.long()


class NgramIndex:
    """Every length-`n` window of a training stream, hashed and sorted once, to find verbatim copies fast."""

    def __init__(self, train: torch.Tensor | np.ndarray | Sequence[int], n: int) -> None:
        # With n = 1 adjacent hits never overlap, so a longer match could not be told from unrelated tokens.
        if n < 2:
            raise ValueError(f"min_len must be at least 2 tokens, got {n}")
        self.n = n
        self.train = _as_ids(train)
        if self.train.numel() >= n:
            self.keys, self.order = torch.sort(_window_keys(self.train, n), stable=True)
        else:
            self.keys = self.order = torch.zeros(0, dtype=torch.long)

    def _occurs(self, window: list[int], key: int, first: int) -> bool:
        """True if `window` is in the text at one of the positions whose key equals `key`, from index `first`."""
        j = first
        while j < self.keys.numel() and int(self.keys[j]) == key:
            p = int(self.order[j])
            if self.train[p : p + self.n].tolist() == window:
                return True
            j += 1
        return False

    def spans(self, sample: Sequence[int]) -> list[tuple[int, int]]:
        """Maximal spans [start, end) of `sample` covered by verbatim matches of at least `n` tokens.

        Overlapping matches merge into one span; matches that only touch stay separate, since the
        joined text need not occur anywhere.
        """
        n = self.n
        s = _as_ids(sample)
        sample_list = s.tolist()
        if s.numel() < n or self.keys.numel() == 0:
            return []
        want = _window_keys(s, n)
        pos = torch.searchsorted(self.keys, want).clamp(max=self.keys.numel() - 1)
        cand = (self.keys[pos] == want).nonzero().flatten()
        if cand.numel() == 0:
            return []
        # Check each candidate against its first occurrence in one gather; only a collision takes the slow path.
        windows = s.unfold(0, n, 1)[cand]  # (H, n)
        starts = self.order[pos[cand]]
        same = (self.train[starts[:, None] + torch.arange(n)[None, :]] == windows).all(dim=1)
        checks = zip(cand.tolist(), same.tolist(), want[cand].tolist(), pos[cand].tolist(), strict=True)
        hits = [i for i, ok, k, f in checks if ok or self._occurs(sample_list[i : i + n], k, f)]
        out: list[tuple[int, int]] = []
        for i in hits:
            if out and i < out[-1][1]:
                out[-1] = (out[-1][0], i + n)
            else:
                out.append((i, i + n))
        return out


def memorized_spans(sample: Sequence[int], train: torch.Tensor | Sequence[int], min_len: int) -> list[tuple[int, int]]:
    """Maximal spans [start, end) of `sample` covered by verbatim copies from `train` of `min_len`+ tokens.

    Overlapping copies merge, so a long span may join two places in `train`.
    Builds the index each call: to check many samples against one text, keep an `NgramIndex`.
    """
    return NgramIndex(train, min_len).spans(sample)


# ---- 2. "is this normal?" -------------------------------------------------------------------------------------

Severity = Literal["info", "warn", "error"]
SMOOTH = 20  # steps averaged for the "current" train loss: one batch is too noisy to judge
GRACE_STEPS = 50  # before this, a loss above ln V is just the random start
RISE = 1.5  # the smoothed loss growing by half over SMOOTH steps is divergence, not noise
OVERFIT_GAP = 0.1  # nats of val - train below which a rising val is within evaluation noise


@dataclass(frozen=True)
class Hint:
    """One observation about a run: what it means and what to try."""

    kind: str  # nan | diverging | above_unigram | below_bigram | overfitting | ok
    severity: Severity
    text: str


def _finite_mean(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


def run_hints(history: Mapping[str, Sequence[float]], baselines: Mapping[str, float], window: int = 3) -> list[Hint]:
    """Hints about a run from its `History.to_dict()` and its count baselines (uniform, unigram, bigram; nats).

    `window` is the number of recent evaluations compared for overfitting.
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 evaluations, got {window}")
    steps = list(history.get("steps", []))
    loss = [float(v) for v in history.get("loss", [])]
    ev_train = [float(v) for v in history.get("eval_train", [])]
    ev_val = [float(v) for v in history.get("eval_val", [])]
    if not loss and not ev_val:
        return []
    if loss and not math.isfinite(loss[-1]):
        word = "NaN" if math.isnan(loss[-1]) else "infinite"
        # Nothing else is meaningful once the weights are gone.
        return [Hint("nan", "error", f"the loss is {word}: lower the learning rate (--lr) or reset")]
    hints: list[Hint] = []
    smoothed = _finite_mean(loss[-SMOOTH:]) if loss else math.nan
    uniform, unigram, bigram = (baselines.get(k) for k in ("uniform", "unigram", "bigram"))
    diverging: Hint | None = None
    if loss and uniform is not None and steps and steps[-1] >= GRACE_STEPS and smoothed > uniform:
        diverging = Hint(
            "diverging",
            "error",
            f"the loss {smoothed:.2f} is above the uniform baseline ln V = {uniform:.2f}, worse than guessing: "
            "the run is diverging; lower --lr (try half) or lengthen --warmup, then reset",
        )
    elif len(loss) >= 2 * SMOOTH:
        before = _finite_mean(loss[-2 * SMOOTH : -SMOOTH])
        if smoothed > RISE * before:
            diverging = Hint(
                "diverging",
                "error",
                f"the loss rose from {before:.2f} to {smoothed:.2f} over the last {SMOOTH} steps: the run is "
                "diverging; lower --lr (try half) or lengthen --warmup, then reset",
            )
    if diverging is not None:
        hints.append(diverging)
    elif loss:  # comparing a diverging loss with the baselines would only repeat the alarm
        if unigram is not None and smoothed > unigram:
            hints.append(
                Hint(
                    "above_unigram",
                    "info",
                    f"still above the unigram baseline {unigram:.2f}: the model has not yet learned which tokens "
                    "are common; keep training",
                )
            )
        if bigram is not None and smoothed < bigram:
            hints.append(
                Hint(
                    "below_bigram",
                    "info",
                    f"below the bigram baseline {bigram:.2f}: it now uses more than the previous token",
                )
            )
    if len(ev_val) >= window and len(ev_train) >= window:
        v0, v1, t0, t1 = ev_val[-window], ev_val[-1], ev_train[-window], ev_train[-1]
        # NaN (an evaluation without a train loss) fails every comparison, so it never warns.
        if v1 > v0 and t1 < t0 and v1 - t1 > OVERFIT_GAP:
            hints.append(
                Hint(
                    "overfitting",
                    "warn",
                    f"val is rising while train falls ({v0:.2f} → {v1:.2f} vs {t0:.2f} → {t1:.2f}): overfitting; "
                    "try more text, --dropout 0.1-0.2, a smaller model, or stop here",
                )
            )
    if not hints:
        now = f" (train loss {smoothed:.2f})" if math.isfinite(smoothed) else ""
        hints.append(Hint("ok", "info", f"nothing unusual{now}: no sign of divergence or overfitting"))
    return hints


# ---- 3. surprisal buckets -------------------------------------------------------------------------------------

DEFAULT_RANK_EDGES: tuple[int, ...] = (1, 3, 10, 100)
DEFAULT_PROB_EDGES: tuple[float, ...] = (0.5, 0.1, 0.01, 0.001)
# The Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008), designed to stay distinct under every
# common colour-vision deficiency; ordered cool to hot: blue, sky blue, yellow, orange, vermillion.
PALETTE: tuple[str, ...] = ("#0072B2", "#56B4E9", "#F0E442", "#E69F00", "#D55E00")


def rank_bucket(rank: int, edges: Sequence[int] = DEFAULT_RANK_EDGES) -> int:
    """0 for rank <= edges[0], i for edges[i-1] < rank <= edges[i], len(edges) beyond the last edge."""
    return bisect.bisect_left(edges, rank)


def prob_bucket(p: float, edges: Sequence[float] = DEFAULT_PROB_EDGES) -> int:
    """0 for p >= edges[0] (most probable), up to len(edges) for p below the last edge; NaN is the last."""
    if math.isnan(p):
        return len(edges)
    return sum(1 for e in edges if p < e)


def parse_edges(text: str, count: int | None = len(PALETTE) - 1) -> tuple[int, ...]:
    """Rank edges from a user's edit like "1, 5, 20, 200": strictly increasing positive integers.

    `count` edges are required (one colour per bucket), or any number when it is None.
    """
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise ValueError("give rank edges as whole numbers separated by commas, like 1, 3, 10, 100")
    edges: list[int] = []
    for p in parts:
        try:
            edges.append(int(p))
        except ValueError:
            raise ValueError(f"{p!r} is not a whole number: write rank edges like 1, 3, 10, 100") from None
    if count is not None and len(edges) != count:
        raise ValueError(f"give exactly {count} rank edges (one per colour boundary), got {len(edges)}")
    if edges[0] < 1:
        raise ValueError(f"ranks start at 1: the edge {edges[0]} must be positive")
    for a, b in pairwise(edges):
        if b <= a:
            raise ValueError(f"rank edges must increase: {b} comes after {a}")
    return tuple(edges)


# ---- 4. tokenizer comparison ----------------------------------------------------------------------------------


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


# ---- 5. temperature -------------------------------------------------------------------------------------------


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


# ---- 6. reproduce and export ----------------------------------------------------------------------------------

# RunSpec.train keys that `tui-gpt train` sets, with their options (--steps sets decay_steps).
_TRAIN_OPTIONS = (
    ("batch_size", "--batch-size"),
    ("lr", "--lr"),
    ("warmup_steps", "--warmup"),
    ("seed", "--seed"),
    ("eval_interval", "--eval-interval"),
    ("eval_iters", "--eval-iters"),
    ("decay_steps", "--steps"),
)


def reproduce_command(spec: Mapping) -> str:
    """The `tui-gpt train ...` line that reproduces a run, from `dataclasses.asdict(RunSpec)`.

    Settings with no command-line option that differ from their defaults (weight decay, ...)
    are listed in a trailing shell comment, so pasting the line still runs.
    """
    train = dict(spec.get("train") or {})
    args = ["--tokenizer", str(spec.get("tokenizer", "char"))]
    if spec.get("vocab_size") is not None:
        args += ["--vocab-size", str(spec["vocab_size"])]
    for key in ("n_layer", "n_head", "n_embd", "block_size", "dropout"):
        if spec.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(spec[key])]
    for key, opt in _TRAIN_OPTIONS:
        if train.get(key) is not None:
            args += [opt, str(train[key])]
    for key in ("dtype", "device"):
        if train.get(key) not in (None, "auto"):
            args += [f"--{key}", str(train[key])]
    if spec.get("causal", True) is False:
        args.append("--no-causal")
    if spec.get("resume"):
        args += ["--resume", str(spec["resume"])]
    sources = [str(s) for s in spec.get("sources") or []]
    if any(s.startswith("-") for s in sources):
        args += ["--", *sources]  # a file named like an option must come after "--"
    else:
        args = sources + args
    line = " ".join(shlex.quote(a) for a in ["tui-gpt", "train", *args])
    defaults = TrainConfig().to_dict()
    cli_keys = {key for key, _ in _TRAIN_OPTIONS} | {"dtype", "device"}
    unset = [f"{k}={v}" for k, v in train.items() if k not in cli_keys and k in defaults and v != defaults[k]]
    if unset:
        line += "  # not settable from the command line: " + ", ".join(unset)
    return line


def _cell(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def history_csv(history: Mapping[str, Sequence[float]]) -> str:
    """A `History.to_dict()` as CSV: one row per step; the eval columns only on evaluation steps, else blank.

    The evaluation before the first step (step 0) gets its own row with blank train_loss and lr.
    """
    rows: dict[int, list[str]] = {}
    for step, loss, lr in zip(history.get("steps", []), history.get("loss", []), history.get("lr", []), strict=False):
        rows[int(step)] = [_cell(loss), _cell(lr), "", ""]
    evals = zip(history.get("eval_steps", []), history.get("eval_val", []), history.get("eval_train", []), strict=False)
    for step, val, tr in evals:
        row = rows.setdefault(int(step), ["", "", "", ""])
        # History records a missing eval train loss as NaN: write it as blank, like any missing value.
        row[2], row[3] = _cell(val), "" if tr is None or math.isnan(tr) else _cell(tr)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "train_loss", "lr", "val_loss", "eval_train_loss"])
    for step in sorted(rows):
        w.writerow([step, *rows[step]])
    return buf.getvalue()


def examples_csv(rows: Sequence[Example], labels: Sequence[str]) -> str:
    """Training examples as CSV; `labels[i]` is the text of the i-th token the model saw.

    Each row: the position, the text before it, the target token's text, p, -log p and rank.
    """
    if rows and max(r.position for r in rows) >= len(labels):
        raise ValueError(f"{len(labels)} labels do not cover position {max(r.position for r in rows)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["position", "prefix", "target", "p", "neg_log_p", "rank"])
    for r in rows:
        w.writerow([r.position, "".join(labels[: r.position]), labels[r.position], repr(r.prob), repr(r.nll), r.rank])
    return buf.getvalue()
