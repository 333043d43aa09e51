"""Memorization: which spans of a sample are copied verbatim from the training text."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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
