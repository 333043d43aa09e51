"""A GPT-2 style language model, small enough to train on a laptop CPU.

Shapes in comments: B batch, T time (sequence length), C channels (n_embd),
nh heads, hs head size (C // nh), V vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from tui_gpt.settings import RunSpec, heads_problem

_DEFAULT = RunSpec()  # the one place the defaults live


class Cancelled(Exception):
    """An inference pass gave up between two blocks: its `cancelled` check said the answer is not wanted."""


def _check(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = _DEFAULT.block_size
    n_layer: int = _DEFAULT.n_layer
    n_head: int = _DEFAULT.n_head
    n_embd: int = _DEFAULT.n_embd
    dropout: float = _DEFAULT.dropout or 0.0
    bias: bool = True
    causal: bool = _DEFAULT.causal  # False lets every position see the future: the mask experiment
    # GPT-2's options: its MLP uses the tanh approximation of GELU, and its checkpoints have 1024
    # position rows even when we train on shorter windows (block_size is the context we use).
    gelu_approximate: str = "none"  # "none" (exact GELU) or "tanh" (GPT-2's gelu_new)
    layer_norm_eps: float = 1e-5
    n_positions: int | None = None  # rows of the position table; None: block_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def num_params(self) -> int:
        """What `GPT(self).num_params()` counts (the position table left out), without building the model."""
        C, b = self.n_embd, int(self.bias)
        norm = C * (1 + b)
        # ln_1, c_attn, c_proj, ln_2, c_fc, mlp c_proj
        block = norm + (3 * C * C + b * 3 * C) + (C * C + b * C) + norm + (4 * C * C + b * 4 * C) + (4 * C * C + b * C)
        return self.vocab_size * C + self.n_layer * block + norm  # tied token table and head, ln_f

    @property
    def mask_bytes(self) -> int:
        """Memory of the causal masks: a bool (T, T) per layer, and one more while the last is built."""
        return (self.n_layer + 1) * self.block_size**2


@dataclass
class KVCache:
    """The keys and values of a prefix, one pair per layer: what incremental decoding attends to.

    Positions are absolute (learned position embeddings), so a cache is only valid while the
    whole sequence fits in block_size: when the context window slides, every position shifts
    and the cache must be rebuilt from the new window (`GPT.forward_cached(window, None)`).
    """

    k: list[torch.Tensor] = field(default_factory=list)  # per layer: (B, nh, P, hs)
    v: list[torch.Tensor] = field(default_factory=list)  # per layer: (B, nh, P, hs)

    @property
    def length(self) -> int:
        """P: how many tokens the cache holds."""
        return self.k[0].size(2) if self.k else 0


class CausalSelfAttention(nn.Module):
    mask: torch.Tensor  # (1, 1, block_size, block_size) bool, a buffer: True where a position may look

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert not (why := heads_problem(config.n_embd, config.n_head)), why
        self.config = config
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.use_sdpa: bool | None = None  # None: the rule below; the trainer sets what it measured
        mask = torch.ones(config.block_size, config.block_size, dtype=torch.bool).tril()
        self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size), persistent=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, nh, T, hs): one slice of the channels per head."""
        B, T, C = t.shape
        return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, want_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q, k, v = (self._heads(t) for t in (q, k, v))  # 3 x (B, nh, T, hs)
        causal = self.config.causal
        # Measured on a 2-core AVX-512 CPU: under bf16 autocast the explicit path below is about
        # 1.4x faster than SDPA's CPU flash kernel, so SDPA is the fast path everywhere else.
        sdpa = self.use_sdpa
        if sdpa is None:
            sdpa = not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu"))
        if not want_attn and sdpa:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.config.dropout if self.training else 0.0, is_causal=causal
            )
            att = None
        else:
            # The explicit path: same maths, and the (B, nh, T, T) weights can be shown.
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
            if causal:
                att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
            att = F.softmax(att, dim=-1)
            y = self.attn_dropout(att) @ v  # (B, nh, T, hs)
            if not want_attn:
                att = None
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y)), att

    def forward_cached(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend from T new positions to the P cached ones and to each other (causally); inference only."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q, k, v = (self._heads(t) for t in (q, k, v))  # 3 x (B, nh, T, hs)
        P = 0
        if past is not None:
            pk, pv = past  # (1 or B, nh, P, hs): one prefix may be shared by B candidates
            P = pk.size(2)
            k = torch.cat([pk.expand(B, -1, -1, -1), k], dim=2)  # (B, nh, P+T, hs)
            v = torch.cat([pv.expand(B, -1, -1, -1), v], dim=2)  # (B, nh, P+T, hs)
        # New token i sits at position P+i and sees keys 0..P+i. SDPA's is_causal aligns the mask
        # top-left, which is wrong when P > 0, so the mask is explicit (one new token needs none).
        mask = None if T == 1 else self.mask[0, 0, P : P + T, : P + T]  # (T, P+T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y), (k, v)

    def forward_candidates(
        self,
        x: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor],
        own: tuple[torch.Tensor, torch.Tensor],
        pad: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new token for each of B candidates: it sees the shared prefix, its own earlier tokens, itself.

        prefix: keys and values (1, nh, P, hs) shared by all rows; own: (B, nh, L, hs) per row, where
        pad (B, L) marks the padding of the rows with fewer than L earlier tokens.
        """
        B, T, C = x.shape  # T == 1
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, 1, C)
        q, k, v = (self._heads(t) for t in (q, k, v))  # 3 x (B, nh, 1, hs)
        (pk, pv), (ok, ov) = prefix, own
        # The prefix broadcasts over the batch: its keys are read once, never copied B times.
        att_p = q @ pk.transpose(-2, -1)  # (B, nh, 1, P)
        att_o = (q @ ok.transpose(-2, -1)).masked_fill(pad[:, None, None, :], float("-inf"))  # (B, nh, 1, L)
        att_n = (q * k).sum(-1, keepdim=True)  # (B, nh, 1, 1)
        att = F.softmax(torch.cat([att_p, att_o, att_n], dim=-1) / math.sqrt(k.size(-1)), dim=-1)
        P, L = pk.size(2), ok.size(2)
        y = att[..., :P] @ pv + att[..., P : P + L] @ ov + att[..., P + L :] * v  # (B, nh, 1, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, 1, C)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)
        return y


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, want_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, att = self.attn(self.ln_1(x), want_attn)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, att

    def forward_cached(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn.forward_cached(self.ln_1(x), past)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, kv

    def forward_candidates(
        self,
        x: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor],
        own: tuple[torch.Tensor, torch.Tensor],
        pad: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn.forward_candidates(self.ln_1(x), prefix, own, pad)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, kv


class Blocks(nn.ModuleList):
    """The transformer's layers: a ModuleList (so the weights keep GPT-2's names) that yields its Blocks."""

    def __iter__(self) -> Iterator[Block]:
        for block in super().__iter__():
            if not isinstance(block, Block):
                raise TypeError(f"transformer.h holds a {type(block).__name__}, not a Block")
            yield block


class Trunk(nn.ModuleDict):
    """The model below its output head, keyed as in GPT-2 (transformer.wte, transformer.h.0, ...).

    A ModuleDict, as before; the annotations only tell the type checker what each key holds.
    """

    wte: nn.Embedding
    wpe: nn.Embedding
    drop: nn.Dropout
    h: Blocks
    ln_f: nn.LayerNorm


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = Trunk(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.n_positions or config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=Blocks([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, want_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """Return (logits (B, T, V), mean cross-entropy loss or None, attention per layer).

        The attention list holds one (B, nh, T, T) tensor per layer when want_attn is set.
        """
        _, T = idx.shape  # (B, T)
        if self.config.block_size < T:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        attns: list[torch.Tensor] = []
        for block in self.transformer.h:
            x, att = block(x, want_attn)
            if att is not None:
                attns.append(att)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            # Targets of -1 are not examples (one-example steps use them to mask the rest).
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss, attns

    @torch.no_grad()
    def forward_cached(
        self, idx: torch.Tensor, cache: KVCache | None = None, cancelled: Callable[[], bool] | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, T, V) of T new tokens after the cached prefix, and the cache extended by them.

        The new tokens take positions P..P+T-1 after the P cached ones, so P+T must fit in block_size.
        A cache with batch 1 is shared by all B rows of `idx`: several candidate continuations of one
        prefix in one pass (right-pad rows of different lengths; a padded position never changes the
        logits before it). Same logits as `forward` on the whole sequence; causal models only.
        `cancelled` is asked before every block: when it says yes the pass raises `Cancelled` (a
        GPT-2 pass takes tens of ms, a block a twelfth of that).
        """
        if not self.config.causal:
            raise ValueError("a KV cache needs a causal model: without the mask, old positions see new tokens")
        T = idx.size(1)  # idx: (B, T)
        P = cache.length if cache is not None else 0
        if self.config.block_size < P + T:
            raise ValueError(f"{P} cached + {T} new tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(P, P + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        new = KVCache()
        for i, block in enumerate(self.transformer.h):
            _check(cancelled)
            x, (k, v) = block.forward_cached(x, (cache.k[i], cache.v[i]) if cache is not None else None)
            new.k.append(k)
            new.v.append(v)
        _check(cancelled)  # the head over the vocabulary costs GPT-2 a third of a pass
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
        return logits, new

    @torch.no_grad()
    def forward_candidates(
        self,
        idx: torch.Tensor,
        cache: KVCache,
        own: KVCache,
        lengths: torch.Tensor,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Next-token logits (B, V) after B candidate continuations of one cached prefix, one new token each.

        idx (B,) is each candidate's newest token; own holds the keys and values of its earlier tokens,
        (B, nh, L, hs) per layer, of which the first lengths[b] are real and the rest padding. The prefix
        cache (batch 1) is shared, never copied. Returns the logits and the new token's keys and values
        (B, nh, 1, hs) per layer, to append to `own` for the candidate's own continuations.
        Same logits as `forward` on prefix + candidate; causal models only. `cancelled`: as in
        `forward_cached`, asked before every block.
        """
        if not self.config.causal:
            raise ValueError("a KV cache needs a causal model: without the mask, old positions see new tokens")
        P, L = cache.length, own.length
        if self.config.block_size <= P + int(lengths.max()):
            raise ValueError(f"{P} cached + {int(lengths.max()) + 1} new tokens is longer than block_size")
        pad = torch.arange(L, device=idx.device)[None, :] >= lengths[:, None]  # (B, L)
        x = self.transformer.wte(idx) + self.transformer.wpe(P + lengths)  # (B, C): row b at position P + lengths[b]
        x = x[:, None]  # (B, 1, C)
        new = KVCache()
        for i, block in enumerate(self.transformer.h):
            _check(cancelled)
            x, (k, v) = block.forward_candidates(x, (cache.k[i], cache.v[i]), (own.k[i], own.v[i]), pad)
            new.k.append(k)
            new.v.append(v)
        _check(cancelled)
        return self.lm_head(self.transformer.ln_f(x[:, 0])), new  # (B, V)

    def configure_optimizer(self, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
        # Decay the matrices, not the biases and LayerNorm gains, as nanoGPT does.
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        # The fused kernel: one pass over all parameters (also on CPU), not one small op per tensor.
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
