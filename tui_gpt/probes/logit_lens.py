"""The logit lens: what each layer already "thinks" comes next.

The residual stream at the prompt's last position is read after the embeddings and after every
block, and each reading goes through the final layer norm and the head, as if the model ended
there (nostalgebraist, 2020). The last reading is the model's own output. Where the guess first
appears, and how early it settles, shows which layers do the work; as training goes on it moves
to earlier layers.

In words (`lens_words`), each reading is searched for next words exactly as the Next word pane
searches the model's output: `nextword.next_words` on the model cut after that layer (`cut`),
which is the lens as a model of its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tui_gpt.engine.model import GPT, Blocks, Trunk
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.nextword import DEFAULT_MAX_TOKENS, NextWords, next_words
from tui_gpt.probes.predict import Guess, context, top_guesses
from tui_gpt.settings import SEARCH_BUDGET, SEARCH_SECONDS


@dataclass(frozen=True)
class LensRow:
    """One reading of the residual stream: after the embeddings (layer 0) or after block `layer`."""

    layer: int
    guesses: list[Guess]  # the top-k next tokens, as if the model ended here
    final_prob: float  # p here of the model's own top next token: how far this layer is towards it


@dataclass(frozen=True)
class LogitLens:
    ids: list[int]  # the tokens read: the last block_size of the prompt (end-of-text for an empty one)
    dropped: int  # tokens cut from the front to fit the context
    rows: list[LensRow]  # n_layer + 1: the embeddings, then every block
    final_id: int  # the model's own top next token


def layer_name(layer: int) -> str:
    return "embed" if layer == 0 else f"layer {layer}"


@torch.no_grad()
def residual_streams(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """The residual stream of ids x (B, T) after the embeddings and after each block: (n_layer + 1, B, T, C)."""
    if model.training:
        model.eval()
    t = model.transformer
    blocks = t["h"]
    if not isinstance(blocks, torch.nn.ModuleList):
        raise TypeError(f"transformer.h is a {type(blocks).__name__}, not a ModuleList of blocks")
    T = x.size(1)
    h: torch.Tensor = t["wte"](x) + t["wpe"](torch.arange(T, device=x.device))  # (B, T, C)
    streams = [h]
    for block in blocks:
        h, _ = block(h)
        streams.append(h)
    return torch.stack(streams)


@torch.no_grad()
def read_out(model: GPT, streams: torch.Tensor) -> torch.Tensor:
    """Logits (..., V) of residual streams (..., C) through the final layer norm and the head."""
    logits: torch.Tensor = model.lm_head(model.transformer["ln_f"](streams)).float()
    return logits


@torch.no_grad()
def logit_lens(model: GPT, tokenizer: TextTokenizer, ids: list[int], k: int = 5) -> LogitLens:
    """Each layer's top-`k` next tokens after `ids` (probabilities at temperature 1)."""
    ctx, dropped = context(ids, model.config.block_size)
    ctx = ctx or [tokenizer.eot_id]  # nothing typed: condition on a document start
    x = torch.tensor([ctx], dtype=torch.long, device=next(model.parameters()).device)
    logits = read_out(model, residual_streams(model, x)[:, 0, -1])  # (n_layer + 1, V)
    final = int(logits[-1].argmax())
    probs = F.softmax(logits, dim=-1)[:, final].tolist()
    pairs = enumerate(zip(logits, probs, strict=True))
    rows = [LensRow(i, top_guesses(row, tokenizer, k, 1.0), p) for i, (row, p) in pairs]
    return LogitLens(ctx, dropped, rows, final)


def cut(model: GPT, depth: int) -> GPT:
    """`model` as if it ended after its first `depth` blocks: the lens at that layer, as a model of its own.

    It shares every weight (nothing is copied): its logits are the residual stream after block
    `depth` (the embeddings for 0) through the final layer norm and the head, at every position,
    and its KV cache is the first `depth` layers' of the whole model's. So whatever runs on a model
    (the next-word search) runs on a layer.
    """
    if not 0 <= depth <= model.config.n_layer:
        raise ValueError(f"a layer from 0 to {model.config.n_layer}, not {depth}")
    # With no blocks there is no attention, so the mask is moot; a model without it takes the
    # search's road without a cache, since a cache of no layers could not say how long the prefix is.
    config = dataclasses.replace(model.config, n_layer=depth, causal=model.config.causal and depth > 0)
    # A GPT without GPT.__init__, which would make (and initialise) weights only to drop them: a
    # Module, then the whole model's own parts. (On the meta device, the first init costs seconds.)
    lens = GPT.__new__(GPT)
    torch.nn.Module.__init__(lens)
    lens.config = config
    t = model.transformer
    lens.transformer = Trunk(dict(wte=t.wte, wpe=t.wpe, drop=t.drop, h=Blocks(list(t.h)[:depth]), ln_f=t.ln_f))
    lens.lm_head = model.lm_head
    lens.train(model.training)
    return lens


@dataclass(frozen=True)
class LensWords:
    """Each layer's next words after a text, found by the Next word pane's search on that layer's logits."""

    rows: list[NextWords]  # n_layer + 1: the embeddings, then every block; rows[-1] is the model's own answer

    @property
    def final(self) -> str | None:
        """The model's own likeliest next word (of the last row), if any."""
        words = self.rows[-1].words
        return words[0].text if words else None

    def final_prob(self, layer: int) -> float | None:
        """p at `layer` of the model's own top word; None when it is not among that layer's words."""
        return next((w.prob for w in self.rows[layer].words if w.text == self.final), None)


@torch.no_grad()
def lens_words(
    model: GPT,
    tokenizer: TextTokenizer,
    text: str,
    k: int = 5,
    cancelled: Callable[[], bool] | None = None,
    after_word: bool = False,
    budget: int = SEARCH_BUDGET,
    seconds: float = SEARCH_SECONDS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> LensWords | None:
    """Each layer's top-`k` next words after `text` (at temperature 1); None if cancelled.

    One `next_words` search per layer, on the model cut there; the last layer's is the model's
    own (the Next word pane's, at temperature 1). `budget` and `max_tokens` are each search's
    (`next_words`'); `seconds` is shared:
    each layer gets an equal part of what is left, and a search cut short says so (`cut_by`).
    """
    n = model.config.n_layer + 1
    deadline = time.monotonic() + seconds
    rows: list[NextWords] = []
    for depth in range(n):
        share = max(0.0, deadline - time.monotonic()) / (n - depth)
        found = next_words(
            cut(model, depth),
            tokenizer,
            text,
            k=k,
            budget=budget,
            cancelled=cancelled,
            after_word=after_word,
            seconds=share,
            max_tokens=max_tokens,
        )
        if found is None:
            return None
        rows.append(found)
    return LensWords(rows)
