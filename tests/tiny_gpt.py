"""A seeded tiny GPT for the model and KV-cache tests."""

from __future__ import annotations

import torch

from tui_gpt.engine.model import GPT, GPTConfig


def make_model(causal: bool = True, vocab_size: int = 24, block_size: int = 16, scale: float = 1.0, **over) -> GPT:
    """Two layers, two heads, width 16, in eval mode; `scale` multiplies every weight (a larger one
    than the init's makes a wrong position or mask show in the logits)."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16, causal=causal, **over
    )
    model = GPT(config)
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    return model.eval()
