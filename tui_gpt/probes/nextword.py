"""Next words, not next tokens: p(word | text) from a model that reads characters or subwords.

A word follows the project's splitter (tokenizer.WORD_SPLIT, GPT-2 style): an optional leading space
and a run of letters, or of digits, or of punctuation; or a run of whitespace. Two simplifications,
the same everywhere here: a contraction ("'s") is two words ("'" and "s"), and a run of several
spaces is one whitespace word (GPT-2 gives its last space to the next word).

    p(word) = p(its tokens | text) * p(the token after them starts a new word)

summed over the spellings found (" lazy" or " la" + "zy"). The second factor is one masked sum of a
softmax: whether a token starts a new word depends only on its first character and on the class
of the word's last one; end of text also ends a word. See the next-word design note.
"""

from __future__ import annotations

import bisect
import heapq
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from tui_gpt.engine.model import GPT, Cancelled, KVCache
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.settings import SEARCH_BUDGET, SEARCH_SECONDS, TOP_K

DEFAULT_K = TOP_K
DEFAULT_BUDGET = SEARCH_BUDGET  # forward passes; each one extends up to DEFAULT_WIDTH partial words
DEFAULT_WIDTH = 16
DEFAULT_MAX_TOKENS = 16  # longest word, in tokens, the search follows (a char model spells a word per letter)
CHILDREN = 32  # most continuations kept per expanded partial word; the rest bound the answer
UNKNOWN = "\ufffd".encode()  # an unknown token's text, to the word splitter: one unknown character

# States of a word being read left to right: nothing yet, a leading space, or a run of one class.
START, SPACE, LETTERS, DIGITS, PUNCT, BLANKS = range(6)
N_STATES = 6


def _class(c: str) -> int:
    if c.isalpha():
        return LETTERS
    if c.isnumeric():
        return DIGITS
    return BLANKS if c.isspace() else PUNCT


def _first(c: str) -> int:
    """The state after reading `c` at the start of a word."""
    return SPACE if c == " " else _class(c)


def _step(state: int, c: str) -> int | None:
    """The state after reading `c`, or None when `c` starts a new word."""
    if state == START:
        return _first(c)
    if state == SPACE:
        return _class(c)
    return state if _class(c) == state else None


def _scan(state: int, text: str) -> tuple[int | None, int]:
    """(index in `text` where a new word starts, or None; the state reached before it)."""
    for i, c in enumerate(text):
        nxt = _step(state, c)
        if nxt is None:
            return i, state
        state = nxt
    return None, state


def split_words(text: str) -> list[int]:
    """The start index of every word of `text` (the first is 0 when the text is not empty)."""
    starts = [0] if text else []
    state = START
    for i, c in enumerate(text):
        nxt = _step(state, c)
        if nxt is None:
            starts.append(i)
            nxt = _first(c)
        state = nxt
    return starts


def split_typed(text: str) -> tuple[str, str]:
    """(text before the current word, the current word's typed characters).

    The current word is the last one unless the text ends at a boundary (empty, or in whitespace
    other than one space, which GPT-2 style belongs to the next word): then it is "".
    """
    starts = split_words(text)
    if not starts:
        return "", ""
    last = text[starts[-1] :]
    _, state = _scan(START, last)
    if state == BLANKS:
        return text, ""
    return text[: starts[-1]], last


@dataclass(frozen=True)
class _Tables:
    """Per tokenizer and word state: how each token continues a word (precomputed once)."""

    ends: torch.Tensor  # (N_STATES, V) bool: the token starts a new word, so the word ends before it
    extends: torch.Tensor  # (N_STATES, V) bool: the token is all inside the word
    next_state: torch.Tensor  # (N_STATES, V) long: the word's state after an extending token
    crosses: list[list[tuple[int, int]]]  # per state: (token, i) for tokens whose text ends the word at i > 0
    texts: list[str]
    plain: list[int]  # ids of the tokens that are text (not end-of-text or unknown)


_TABLES: weakref.WeakKeyDictionary[TextTokenizer, _Tables] = weakref.WeakKeyDictionary()


def prepare_tables(tokenizer: TextTokenizer) -> None:
    """Build the tokenizer's word tables now (GPT-2's 50,257 tokens: seconds on a busy CPU), not in the first search."""
    _tables(tokenizer)


def _tables(tokenizer: TextTokenizer) -> _Tables:
    tables = _TABLES.get(tokenizer)
    if tables is not None:
        return tables
    texts = tokenizer.token_texts
    V = len(texts)
    ends = torch.zeros(N_STATES, V, dtype=torch.bool)
    extends = torch.zeros(N_STATES, V, dtype=torch.bool)
    next_state = torch.zeros(N_STATES, V, dtype=torch.long)
    crosses: list[list[tuple[int, int]]] = [[] for _ in range(N_STATES)]
    plain = [v for v in range(V) if not tokenizer.is_special(v) and texts[v]]
    for s in range(N_STATES):
        for v in plain:
            at, state = _scan(s, texts[v])
            if at is None:
                extends[s, v] = True
                next_state[s, v] = state
            elif at == 0:
                ends[s, v] = True
            else:
                crosses[s].append((v, at))
        if s != START:  # end of text ends a word, but is no word itself
            ends[s, tokenizer.eot_id] = True
    tables = _Tables(ends, extends, next_state, crosses, texts, plain)
    _TABLES[tokenizer] = tables
    return tables


@dataclass(frozen=True)
class Word:
    """One next word: its text (with its leading space), probability and likeliest spelling's length."""

    text: str
    prob: float
    nll: float  # -log prob
    tokens: int  # tokens in the likeliest spelling found


@dataclass(frozen=True)
class NextWords:
    """The top-k next words after a text, best first."""

    words: list[Word]
    other: float  # 1 - the shown words' total: the mass of every other word
    cut: bool  # the search stopped before the top-k was proven
    cut_by: str  # why: "budget" (forward passes), "time" (the time limit), "bounds" (word length, children); or ""
    typed: str  # the current word's typed characters that every word completes ("" at a boundary)
    forwards: int  # forward passes spent, the prefix's included
    context: int  # tokens of the text the model saw (the prefix is cut to leave room for the word)


@dataclass
class _Path:
    ids: list[int]  # tokens after the context
    text: str
    state: int
    prob: float
    parent_kv: torch.Tensor | None = None  # keys and values of ids[:-1]: (len(ids) - 1, n_layer, 2, nh, hs)
    kv: torch.Tensor | None = None  # of all of ids, once the path is expanded: what its children read

    def cached_parent(self) -> torch.Tensor:
        """`parent_kv`, which every path searched with a cache (the causal model's) has."""
        if self.parent_kv is None:
            raise ValueError("a path searched with a cache has no keys and values of its parent")
        return self.parent_kv


class Reads:
    """Keys and values of texts a model has read lately, so a search reads only what is new of its context.

    Typing inside a word leaves the text before it unchanged: its next search needs no pass over it,
    and a text that grew at its end, one pass over the new tokens. Entries belong to one set of
    weights: `clear` them when the weights change. Thread-safe (the UI and search threads share one).
    """

    KEEP = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[GPT, list[int], KVCache, torch.Tensor | None]] = []

    def clear(self) -> None:
        with self._lock:
            self._entries = []

    def add(self, model: GPT, ids: list[int], cache: KVCache, last: torch.Tensor | None = None) -> None:
        """`cache` holds the keys and values of `ids` read by `model`; `last`, the logits (1, V) after them."""
        with self._lock:
            kept = [e for e in self._entries if e[1] != ids][-(self.KEEP - 1) :]
            self._entries = [*kept, (model, ids, cache, last)]

    def best(self, model: GPT, ids: list[int]) -> tuple[int, KVCache | None, torch.Tensor | None]:
        """(n, keys and values of ids[:n], the logits after all of ids if known) for the longest n read by `model`."""
        with self._lock:
            entries = list(self._entries)
        best: tuple[int, KVCache | None, torch.Tensor | None] = (0, None, None)
        for m, read, cache, last in entries:
            if m is not model:
                continue
            n = 0
            for a, b in zip(read, ids, strict=False):
                if a != b:
                    break
                n += 1
            if n == len(ids) == len(read) and last is not None:
                return n, cache, last
            n = min(n, len(ids) - 1)  # at least the last token is read again: its logits are the root's
            if n > best[0]:
                best = (n, KVCache([k[:, :, :n] for k in cache.k], [v[:, :, :n] for v in cache.v]), None)
        return best


def _logits(
    model: GPT,
    ctx: list[int],
    cache: KVCache | None,
    paths: list[_Path],
    cancelled: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Next-token logits (B, V) after each path: one batched pass over their tokens after the cached context."""
    dev = next(model.parameters()).device
    if cache is not None:
        # Each path reads its parent's keys and values and adds one token: one new position per row.
        own = pad_sequence([p.cached_parent() for p in paths], batch_first=True)  # (B, L, n_layer, 2, nh, hs)
        n_layer = own.size(2)
        own_cache = KVCache(
            [own[:, :, i, 0].transpose(1, 2) for i in range(n_layer)],  # (B, nh, L, hs)
            [own[:, :, i, 1].transpose(1, 2) for i in range(n_layer)],
        )
        lengths = torch.tensor([len(p.ids) - 1 for p in paths], device=dev)  # (B,)
        idx = torch.tensor([p.ids[-1] for p in paths], device=dev)  # (B,)
        logits, new = model.forward_candidates(idx, cache, own_cache, lengths, cancelled)  # (B, V)
        fresh = torch.stack([torch.stack([k[:, :, 0], v[:, :, 0]], 1) for k, v in zip(new.k, new.v, strict=True)], 1)
        for b, p in enumerate(paths):  # fresh: (B, n_layer, 2, nh, hs)
            p.kv = torch.cat([p.cached_parent(), fresh[b : b + 1]])
        return logits.float()
    # Without the causal mask (the mask experiment) padding would leak backwards: one pass per length.
    out = torch.empty(len(paths), model.config.vocab_size)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(paths):
        by_len.setdefault(len(p.ids), []).append(i)
    for rows in by_len.values():
        x = torch.tensor([ctx + paths[i].ids for i in rows], dtype=torch.long, device=dev)
        logits, _, _ = model(x)
        out[rows] = logits[:, -1].float().cpu()
    return out


@torch.no_grad()
def next_words(
    model: GPT,
    tokenizer: TextTokenizer,
    text: str,
    k: int = DEFAULT_K,
    temperature: float = 1.0,
    budget: int = DEFAULT_BUDGET,
    width: int = DEFAULT_WIDTH,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    cancelled: Callable[[], bool] | None = None,
    after_word: bool = False,
    seconds: float = SEARCH_SECONDS,
    reads: Reads | None = None,
) -> NextWords | None:
    """The k likeliest next words after `text` (probabilities at `temperature`); None if cancelled.

    Best-first search over partial words by path probability: each forward pass extends the `width`
    likeliest partial words together, from one KV cache of the text. It stops, exact, when the k-th
    word beats every partial word left (a path's probability only shrinks as it grows), or after
    `budget` passes or `seconds` with `cut` set, and `cut_by` saying which. A word spelled several
    ways is summed over the spellings found.

    When the text ends inside a word (`over the la`) the words complete it (token healing): the
    search backs up to the start of that word and keeps only continuations that spell the typed
    characters first, so " la" + "zy" and " lazy" both count. A text ending in a space completes
    the space: the next word. With `after_word` the text's last word is taken as finished instead:
    the words after it, given that it ends here ("over the" -> " lazy", ",", ...).
    `cancelled` is checked before every forward pass and, for a causal model, between its blocks.
    `reads`: texts this model has read, whose keys and values start the context's (causal models).

    The model sees the last block_size - max_tokens tokens before the current word (at least half the
    window), so that a word of up to max_tokens tokens never slides the window and the cache stays
    exact; a longer word is not followed, and `cut` says when that could matter.
    """
    cancelled = cancelled or (lambda: False)
    if cancelled():
        return None
    search = _WordSearch(model, tokenizer, text, k, max_tokens, after_word, time.monotonic() + seconds)
    search.reads = reads
    try:
        return search.run(temperature, budget, width, cancelled)
    except Cancelled:
        return None


class _WordSearch:
    """One call of `next_words`: the text split at its current word, the words found, the frontier."""

    def __init__(
        self,
        model: GPT,
        tokenizer: TextTokenizer,
        text: str,
        k: int,
        max_tokens: int,
        after_word: bool,
        deadline: float,
    ) -> None:
        self.model, self.k, self.deadline = model, k, deadline
        self.tables = _tables(tokenizer)
        self.texts = self.tables.texts
        head, self.typed = split_typed(text)
        self.ends_after: torch.Tensor | None = None  # with after_word: the tokens that may start the next word
        if after_word and self.typed.strip():
            _, last_state = _scan(START, self.typed)
            head, self.typed = text, ""
            self.ends_after = self.tables.ends[last_state].clone()
            self.ends_after[tokenizer.eot_id] = False  # the end of the text is no next word
        bs = model.config.block_size
        self.room = max(1, min(max_tokens, bs // 2))  # positions kept for the word; the rest hold the text
        self.ctx = tokenizer.encode(head)[-(bs - self.room) :] or [tokenizer.eot_id]  # nothing before: a document start
        self.words: dict[str, list[float]] = {}  # text -> [prob, best spelling's prob, its tokens]
        # Max-heap of partial words by probability: (-p, order, parent, token, state); a child is made a
        # _Path only when popped, since most are never expanded.
        self.frontier: list[tuple[float, int, _Path, int, int]] = []
        self.order = 0  # tie-break for the heap
        self.bound = 0.0  # the most probable path the search had to drop: the top-k is proven only above it
        # p(the continuation starts with the typed characters), or with a new word (after_word): the condition
        self.typed_mass = 1.0 if not self.typed and self.ends_after is None else 0.0
        self.forwards = 0  # forward passes spent, the prefix's included (none when it was read before)
        self.reads: Reads | None = None

    def run(self, temperature: float, budget: int, width: int, cancelled: Callable[[], bool]) -> NextWords | None:
        """Read the text, then expand the likeliest partial words until the top-k is proven or a limit is hit."""
        model = self.model
        if model.training:
            model.eval()
        self.inv_t = 1.0 / max(temperature, 1e-6)
        root_logits, cache = self._read_context(cancelled)
        cfg, dev = model.config, next(model.parameters()).device
        dtype = next(model.parameters()).dtype  # a bf16 replica's keys and values are bf16 too
        empty = torch.empty(0, cfg.n_layer, 2, cfg.n_head, cfg.n_embd // cfg.n_head, device=dev, dtype=dtype)
        self._expand_all([_Path([], "", START, 1.0, kv=empty)], root_logits)
        stopped = ""  # what ended the search before the frontier was done: the budget or the clock
        frontier = self.frontier
        while frontier and -frontier[0][0] > self._kth():
            if self.forwards >= budget or time.monotonic() >= self.deadline:
                stopped = "budget" if self.forwards >= budget else "time"
                break
            if cancelled():
                return None
            floor = self._kth()
            batch: list[_Path] = []
            while frontier and len(batch) < width and -frontier[0][0] > floor:
                batch.append(self._pop())
            self._expand_all(batch, _logits(model, self.ctx, cache, batch, cancelled))
            self.forwards += 1
        return self._answer(stopped)

    def _read_context(self, cancelled: Callable[[], bool]) -> tuple[torch.Tensor, KVCache | None]:
        """The next-token logits (1, V) after the text before the word, and its keys and values (causal only)."""
        model = self.model
        dev = next(model.parameters()).device
        cache = None
        self.forwards = 1
        if model.config.causal:
            n, known, last = self.reads.best(model, self.ctx) if self.reads is not None else (0, None, None)
            if last is not None and known is not None:
                self.forwards = 0  # read before, to its end
                return last, known
            ctx = torch.tensor([self.ctx[n:]], dtype=torch.long, device=dev)
            root_logits, cache = model.forward_cached(ctx, known, cancelled)
            root_logits = root_logits[0, -1:].float()  # (1, V)
            if self.reads is not None:
                self.reads.add(model, self.ctx, cache, root_logits)
        else:
            root_logits = _logits(model, self.ctx, None, [_Path([], "", START, 1.0)])
        return root_logits, cache

    def _kth(self) -> float:
        """The k-th best word's probability so far (0 with fewer than k)."""
        if len(self.words) < self.k:
            return 0.0
        return heapq.nlargest(self.k, (w[0] for w in self.words.values()))[-1]

    def _add_word(self, word: str, p: float, n_tokens: int) -> None:
        w = self.words.setdefault(word, [0.0, 0.0, 0])
        w[0] += p
        if p > w[1]:
            w[1], w[2] = p, n_tokens

    def _push(self, parent: _Path, v: int, state: int, p: float) -> None:
        if len(parent.ids) >= self.room:  # no position left to read what follows the child
            self.bound = max(self.bound, p)
            return
        self.order += 1
        heapq.heappush(self.frontier, (-p, self.order, parent, v, state))

    def _pop(self) -> _Path:
        p, _, parent, v, state = heapq.heappop(self.frontier)
        return _Path([*parent.ids, v], parent.text + self.texts[v], state, -p, parent.kv)

    def _expand_all(self, paths: list[_Path], logits: torch.Tensor) -> None:
        probs = F.softmax(logits.double() * self.inv_t, dim=-1).cpu()  # (B, V)
        floor = self._kth()  # a child below the k-th word can never enter the top k
        rest = []
        for i, path in enumerate(paths):
            if len(path.text) < len(self.typed) or (self.ends_after is not None and not path.ids):
                self._expand_typed(path, probs[i])
            else:
                rest.append(i)
        if rest:
            self._expand([paths[i] for i in rest], probs[rest], floor)

    def _expand_typed(self, path: _Path, probs: torch.Tensor) -> None:
        """Children of a path that has not spelled all the typed characters yet."""
        typed, texts, ends_after = self.typed, self.texts, self.ends_after
        fits = [v for v in self.tables.plain if typed.startswith(t2 := path.text + texts[v]) or t2.startswith(typed)]
        if ends_after is not None and not path.ids:
            fits = [v for v in fits if ends_after[v]]
        p_fits = probs[fits].tolist()
        for v, pv in zip(fits, p_fits, strict=True):
            t2 = path.text + texts[v]
            at, state = _scan(START, t2)
            p = path.prob * pv
            if len(t2) >= len(typed):  # this spelling has covered the typed characters: one disjoint event
                self.typed_mass += p
            if at is None:
                self._push(path, v, state, p)
            elif at >= len(typed):  # a word that ends inside the typed characters is not their completion
                self._add_word(t2[:at], p, len(path.ids) + 1)

    def _expand(self, batch: list[_Path], probs: torch.Tensor, floor: float) -> None:
        """Children of paths past the typed characters: each word ends, or grows by one token."""
        tables, texts = self.tables, self.texts
        states = torch.tensor([p.state for p in batch])  # (B,)
        joint = probs * torch.tensor([p.prob for p in batch], dtype=probs.dtype)[:, None]  # (B, V) path, then token
        ended = (joint * tables.ends[states]).sum(1).tolist()  # (B,) the word ends here
        child = torch.where(tables.extends[states], joint, 0.0)  # (B, V) the word grows by one token
        top = torch.topk(child, min(CHILDREN + 1, child.size(1)), dim=1)
        values, ids = top.values.tolist(), top.indices.tolist()
        next_states = tables.next_state[states[:, None], top.indices].tolist()
        for b, path in enumerate(batch):
            if path.text:
                self._add_word(path.text, ended[b], len(path.ids))
            crossing = tables.crosses[path.state]
            if crossing:
                for (v, at), p in zip(crossing, joint[b, [v for v, _ in crossing]].tolist(), strict=True):
                    self._add_word(path.text + texts[v][:at], p, len(path.ids) + 1)
            if len(values[b]) > CHILDREN:
                self.bound = max(self.bound, values[b][CHILDREN])
            for p, v, st in zip(values[b][:CHILDREN], ids[b][:CHILDREN], next_states[b], strict=False):
                if p <= floor:
                    break
                self._push(path, v, st, p)

    def _answer(self, stopped: str) -> NextWords:
        """The top-k words found, conditioned on the typed characters, and whether (and why) the search was cut."""
        k, frontier = self.k, self.frontier
        best = sorted(self.words.items(), key=lambda kv: -kv[1][0])[:k]
        floor = self._kth() if len(best) == k else 0.0
        cut = max([self.bound] + [-f[0] for f in frontier[:1]]) > floor
        # The frontier left unexpanded is the budget's or the clock's doing; a dropped path, the bounds'.
        cut_by = (stopped if frontier and -frontier[0][0] > floor else "bounds") if cut else ""
        z = self.typed_mass or 1.0  # condition on the typed characters: p(word | they start it)
        shown = [Word(w, p / z, -math.log(p / z) if p > 0 else math.inf, int(n)) for w, (p, _, n) in best]
        other = max(0.0, 1.0 - sum(w.prob for w in shown))
        return NextWords(shown, other, cut, cut_by, self.typed, self.forwards, len(self.ctx))


def ghost(model: GPT, tokenizer: TextTokenizer, text: str, **search: object) -> str:
    """Ghost text: the rest of the current word, or the likeliest next word after a space.

    Empty when the likeliest completion is the typed word itself (or when cancelled).
    """
    res = next_words(model, tokenizer, text, k=1, **search)  # type: ignore[arg-type]
    if res is None or not res.words:
        return ""
    return res.words[0].text[len(res.typed) :]


@dataclass(frozen=True)
class WordLoss:
    """One word of a token sequence and what the model gave it, token by token (teacher forcing)."""

    first: int  # index of its first token in the ids
    tokens: int  # how many tokens spell it
    text: str
    nll: float  # the sum of its tokens' -log p: -log p(word | the text before it); NaN if one is not predicted

    @property
    def prob(self) -> float:
        return math.exp(-self.nll)


def word_spans(tokenizer: TextTokenizer, ids: list[int]) -> list[range]:
    """The words that `ids` spell, in order, each as the range of its tokens' indexes into `ids`.

    The one word grouping of the probes: words follow `split_words` on the text the tokens stand
    for; a token that spans two words belongs to the one it starts in (byte offsets: a byte-level
    token may hold part of a character). End of text is a word of its own; an unknown token reads
    as one unknown character (U+FFFD).
    """
    spans: list[range] = []
    run: list[int] = []  # indexes of a run of tokens between ends of text
    for j, t in enumerate([*ids, tokenizer.eot_id]):
        if t != tokenizer.eot_id:
            run.append(j)
            continue
        if run:
            pieces = [UNKNOWN if tokenizer.is_special(ids[i]) else tokenizer.to_bytes([ids[i]]) for i in run]
            text = b"".join(pieces).decode("utf-8", errors="surrogateescape")  # one char per stray byte
            char_at = [0]  # byte offset of each character
            for c in text:
                char_at.append(char_at[-1] + len(c.encode("utf-8", errors="surrogateescape")))
            starts = [char_at[i] for i in split_words(text)]
            offset, last_word = 0, -1
            for i, piece in zip(run, pieces, strict=True):
                word = bisect.bisect_right(starts, offset) - 1
                if word != last_word:
                    spans.append(range(i, i + 1))
                    last_word = word
                else:
                    spans[-1] = range(spans[-1].start, i + 1)
                offset += len(piece)
            run = []
        if j < len(ids):
            spans.append(range(j, j + 1))
    return spans


def word_losses(tokenizer: TextTokenizer, ids: list[int], nll: list[float]) -> list[WordLoss]:
    """Per word of `ids` (`word_spans`), the sum of its tokens' `nll` (nll[i]: -log p of ids[i] in context)."""
    rows = []
    for span in word_spans(tokenizer, ids):
        text = tokenizer.to_bytes(ids[i] for i in span).decode("utf-8", errors="backslashreplace")
        rows.append(WordLoss(span.start, len(span), text, sum(nll[i] for i in span)))
    return rows


@dataclass(frozen=True)
class WordExample:
    """One word of a text as a training example: the text before it predicts it, token by token."""

    prefix: str
    word: str
    prob: float  # product of the word's token probabilities in context (teacher forcing)
    nll: float  # -log prob: the sum of its tokens' losses
    tokens: int


@dataclass(frozen=True)
class WordExamples:
    rows: list[WordExample]
    loss_per_word: float  # total nll / words: loss per token times tokens per word
    loss_per_token: float  # total nll / tokens (the training loss on these tokens)
    n_tokens: int


@torch.no_grad()
def word_examples(model: GPT, tokenizer: TextTokenizer, text: str) -> WordExamples:
    """One row per word of `text` (after a document start), from one forward pass.

    A word's -log p is the sum of its tokens' losses, so the words' total equals the tokens' total
    and loss/word = loss/token * tokens/word. A token that spans two words counts for the first.
    Only the last block_size tokens are seen; words cut by the window's start are left out.
    """
    ids = [tokenizer.eot_id, *tokenizer.encode(text)]
    bs = model.config.block_size
    dropped = max(0, len(ids) - bs)
    window = ids[dropped:]
    if model.training:
        model.eval()
    nll = [math.nan] * len(ids)  # per token of ids: -log p given what is before it in the window
    if len(window) >= 2:
        dev = next(model.parameters()).device
        logits, _, _ = model(torch.tensor([window], dtype=torch.long, device=dev))
        logp = F.log_softmax(logits[0, :-1].float(), dim=-1)  # (T-1, V)
        tgt = torch.tensor(window[1:], device=logp.device)
        for i, lp in enumerate(logp.gather(1, tgt[:, None])[:, 0].tolist()):
            nll[dropped + 1 + i] = -lp
    body = ids[1:]
    raw = tokenizer.to_bytes(body)
    offsets = [0]  # byte offset of each token of body
    for t in body:
        offsets.append(offsets[-1] + len(tokenizer.to_bytes([t])))
    rows = [
        WordExample(raw[: offsets[w.first]].decode("utf-8", errors="backslashreplace"), w.text, w.prob, w.nll, w.tokens)
        for w in word_losses(tokenizer, body, nll[1:])
        if not math.isnan(w.nll)
    ]
    n_tok = sum(r.tokens for r in rows)
    total = sum(r.nll for r in rows)
    return WordExamples(rows, total / len(rows) if rows else math.nan, total / n_tok if n_tok else math.nan, n_tok)
