"""Surprisal buckets: a token's rank or probability mapped to one of a few colour-blind-safe colours."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from itertools import pairwise

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
