"""The logit lens: what each layer already "thinks" comes next.

The residual stream at the prompt's last position is read after the embeddings and after every
block, and each reading goes through the final layer norm and the head, as if the model ended
there (nostalgebraist, 2020). The last reading is the model's own output. Where the guess first
appears, and how early it settles, shows which layers do the work; as training goes on it moves
to earlier layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tui_gpt.engine.model import GPT
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.predict import Guess, context, top_guesses


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
