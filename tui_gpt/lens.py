"""The app's own copy of the model: it takes weight snapshots from the trainer and answers probes.

The app's one road to the model: every probe the app shows is a method here. No Textual here.
`stage` runs on the thread that receives snapshots; `swap` and the probes run on the UI thread,
so a snapshot never lands under a forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load
from tokenizers import Tokenizer

from tui_gpt.model import GPT, GPTConfig
from tui_gpt.probe import (
    Analysis,
    Completion,
    Surprisal,
    TempRow,
    analyze,
    complete,
    context,
    sample,
    surprisal,
    target_prob,
    temperature_table,
)
from tui_gpt.tokenizer import TextTokenizer
from tui_gpt.tokenview import TokenInfo, describe_ids

if TYPE_CHECKING:
    from tui_gpt.compare import Comparison


class Lens:
    def __init__(self, tokenizer_json: str, model_config: dict) -> None:
        self.tokenizer = TextTokenizer(Tokenizer.from_str(tokenizer_json))
        self.config = GPTConfig(**model_config)
        self.model = self._new_model()
        self.step = 0
        self._spare: list[GPT] = []
        _ = self.tokenizer.token_texts  # build the id -> text table now, not on the first key

    def _new_model(self) -> GPT:
        return GPT(self.config).eval()

    def stage(self, blob: bytes) -> GPT:
        """Load a snapshot into a spare model (off the UI thread) and return it."""
        model = self._spare.pop() if self._spare else self._new_model()
        model.load_state_dict(load(blob), strict=False)  # lm_head is tied to wte
        return model

    def swap(self, model: GPT, step: int) -> None:
        """Make `model` the one that answers probes; keep the old one for the next snapshot."""
        old, self.model, self.step = self.model, model, step
        self._spare.append(old)

    def set_causal(self, causal: bool) -> None:
        self.config.causal = causal

    def analyze(self, text: str, k: int, temperature: float) -> Analysis:
        return analyze(self.model, self.tokenizer, self.tokenizer.encode(text), k, temperature)

    def complete(self, text: str) -> Completion:
        return complete(self.model, self.tokenizer, text)

    @torch.no_grad()
    def logits(self, ids: list[int]) -> torch.Tensor:
        """Logits (T, V) at every position of the last block_size of `ids`."""
        ctx, _ = context(ids or [self.tokenizer.eot_id], self.config.block_size)
        logits, _, _ = self.model(torch.tensor([ctx], dtype=torch.long))
        return logits[0].float()

    def prob(self, ids: list[int], target: int) -> float:
        """p(target | ids)."""
        return target_prob(self.model, ids, target)

    def surprisal(self, text: str, k: int = 8) -> Surprisal:
        """Each token of `text` with its p, -log p and rank, and the top-k before it."""
        return surprisal(self.model, self.tokenizer, self.tokenizer.encode(text), k)

    def temperature(self, text: str, temperature: float, k: int) -> list[TempRow]:
        """The top-k next tokens after `text` as logits, logits / T and softmax."""
        return temperature_table(self.logits(self.tokenizer.encode(text))[-1], temperature, k)

    def describe(self, text: str) -> list[TokenInfo]:
        """The ids the model reads for `text`, with specials and byte fragments marked."""
        return describe_ids(self.tokenizer, self.tokenizer.encode(text))

    def compare(self, path: str | Path, prompt: str, sources: list[str], k: int) -> Comparison:
        """This model beside another checkpoint (loads it, and the run's text: slow, off the UI thread)."""
        from tui_gpt.compare import compare

        return compare(self.model, self.tokenizer, Path(path), prompt, sources, k)

    def sample(self, text: str, n: int, temperature: float = 0.8, seed: int = 0) -> list[int]:
        """`n` sampled tokens after `text` (greedy when temperature is 0)."""
        ids = self.tokenizer.encode(text) or [self.tokenizer.eot_id]
        return list(sample(self.model, ids, n, temperature=temperature, seed=seed))


def ui_threads() -> None:
    """One torch thread for the UI: on 2 cores the trainer needs the other (measured)."""
    torch.set_num_threads(1)
