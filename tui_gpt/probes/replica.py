"""The app's own copy of the model: it takes weight snapshots from the trainer and answers probes.

The app's one road to the model: every probe the app shows is a method here. No Textual here.
`stage` runs on the thread that receives snapshots; `swap` and the probes run on the UI thread,
so a snapshot never lands under a forward pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load
from tokenizers import Tokenizer

from tui_gpt.engine.hf import skip_init
from tui_gpt.engine.model import GPT, Block, Cancelled, GPTConfig, KVCache
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.probes.logit_lens import LensWords, LogitLens, lens_words, logit_lens
from tui_gpt.probes.nextword import NextWords, Reads, WordExamples, next_words, prepare_tables, word_examples
from tui_gpt.probes.predict import (
    Analysis,
    Prediction,
    Surprisal,
    TempRow,
    analyze,
    context,
    sample,
    surprisal,
    target_prob,
    temperature_table,
    top_guesses,
)
from tui_gpt.probes.tokenview import TokenInfo, describe_ids
from tui_gpt.settings import LARGE_PARAMS

if TYPE_CHECKING:
    from tui_gpt.probes.compare import Comparison


StagedModel = GPT  # a model loaded with a snapshot by `Replica.stage`, ready to swap in

AHEAD = 3  # likeliest next keys whose next words are worked out while the person pauses
BF16_GAIN = 1.3  # a large replica keeps its weights in bf16 where a block's pass is at least this much faster


class Replica:
    def __init__(self, tokenizer_json: str, model_config: dict[str, Any], dtype: torch.dtype | None = None) -> None:
        self.tokenizer = TextTokenizer(Tokenizer.from_str(tokenizer_json))
        self.config = GPTConfig(**model_config)
        self.large = self.config.num_params() > LARGE_PARAMS  # a whole forward pass per key is too slow
        # A large model's pass per token reads every weight: bf16 reads half the bytes (where the CPU
        # is measured to do bf16 fast). Its error against fp32: tests/test_engine_replica.py.
        # `dtype` overrides the choice.
        self.dtype = dtype or (fast_dtype(self.config) if self.large else torch.float32)
        self.model = self._new_model()
        self.step = 0
        self._spare: list[GPT] = []
        # Models that worker threads are reading: a snapshot never loads into one of them.
        self._leases: dict[int, int] = {}
        self._lock = threading.Lock()
        # The prompt's keys and values, for next_tokens: (model, ids, cache, last logits).
        self._prompt_cache: tuple[GPT, list[int], KVCache, torch.Tensor] | None = None
        self._version = 0  # bumped by every swap: work done ahead belongs to one set of weights
        self.reads = Reads()  # texts the current weights have read: a search reads only the new tokens
        # (text, k, temperature) -> next words worked out ahead
        self._ahead: dict[tuple[str, int, float], NextWords] = {}
        self.ahead_hits = 0  # keys answered from work done ahead (for the bench)
        _ = self.tokenizer.token_texts  # build the id -> text table now, not on the first key
        prepare_tables(self.tokenizer)  # and the word search's tables (a profile of bench --ui found them in a key)

    def _new_model(self) -> GPT:
        return GPT(self.config).eval().to(self.dtype)

    def stage(self, snapshot: bytes | dict[str, torch.Tensor]) -> GPT:
        """Copy a snapshot (safetensors bytes, or tensors in shared memory) into a spare model, off the UI thread."""
        with self._lock:
            model = self._spare.pop() if self._spare else None
        if model is None:
            with skip_init():  # the snapshot replaces every weight: drawing GPT-2's random ones took seconds
                model = self._new_model()
        model.load_state_dict(
            load(snapshot) if isinstance(snapshot, bytes) else snapshot, strict=False
        )  # lm_head is tied to wte
        return model

    def swap(self, model: GPT, step: int) -> None:
        """Make `model` the one that answers probes; keep the old one for the next snapshot."""
        with self._lock:
            # A spare holds other weights now: the prompt's cached keys and values of it are stale.
            self._prompt_cache = None
            self.reads.clear()
            self._version += 1
            self._ahead = {}
            old, self.model, self.step = self.model, model, step
            if id(old) not in self._leases:  # else it becomes spare when its last reader is done
                self._spare.append(old)

    @contextmanager
    def leased(self) -> Iterator[GPT]:
        """The current model, for a worker thread: no snapshot loads into it until the thread is done."""
        with self._lock:
            model = self.model
            self._leases[id(model)] = self._leases.get(id(model), 0) + 1
        try:
            yield model
        finally:
            with self._lock:
                self._leases[id(model)] -= 1
                if not self._leases[id(model)]:
                    del self._leases[id(model)]
                    if model is not self.model:
                        self._spare.append(model)

    def set_causal(self, causal: bool) -> None:
        self.config.causal = causal

    @torch.no_grad()
    def next_tokens(self, text: str, k: int, temperature: float, threads: int | None = None) -> Prediction:
        """The top-k next tokens alone (no attention, no examples), reusing the keys and values of the
        prompt as it was: typing at its end costs one token's forward pass, not the whole context's.
        `threads`: torch threads for this call (the calling thread's count is put back after)."""
        with torch_threads(threads):
            return self._next_tokens(text, k, temperature)

    def _next_tokens(self, text: str, k: int, temperature: float) -> Prediction:
        ids, dropped = context(self.tokenizer.encode(text) or [self.tokenizer.eot_id], self.config.block_size)
        model, cached = self.model, self._prompt_cache
        if cached is not None and cached[0] is model and cached[1] == ids:
            last = cached[3]
        else:
            cache = None
            new = ids
            if self.config.causal and cached is not None and cached[0] is model and ids[: len(cached[1])] == cached[1]:
                cache, new = cached[2], ids[len(cached[1]) :]  # the prompt grew at its end: extend its cache
            if self.config.causal:
                logits, cache = model.forward_cached(torch.tensor([new], dtype=torch.long), cache)
            else:  # without the mask every position sees the future: no cache can hold
                logits, _, _ = model(torch.tensor([ids], dtype=torch.long))
            last = logits[0, -1].float()
            self._prompt_cache = (model, ids, cache, last) if cache is not None else None
            if cache is not None:
                self.reads.add(model, ids, cache)  # the word search's context is most often a prefix of it
        return Prediction(ids, dropped, top_guesses(last, self.tokenizer, k, temperature), None)

    def analyze(self, text: str, k: int, temperature: float) -> Analysis:
        with self.leased() as model:
            return analyze(model, self.tokenizer, self.tokenizer.encode(text), k, temperature)

    def next_words(
        self,
        text: str,
        k: int,
        temperature: float,
        cancelled: Callable[[], bool] | None = None,
        after_word: bool = False,
        threads: int | None = None,
    ) -> NextWords | None:
        """The top-k next words (or completions of the word being typed); None if cancelled. Off the UI thread.

        `after_word` takes the typed text as a whole word: the words that come after it. Words worked
        out ahead (`think_ahead`) for these weights are answered at once. `threads`: torch threads
        for this search (torch's count is the calling thread's own).
        """
        if not after_word and (ready := self._ahead.get((text, k, temperature))) is not None:
            self.ahead_hits += 1
            return ready
        with self.leased() as model, torch_threads(threads):
            return next_words(
                model,
                self.tokenizer,
                text,
                k=k,
                temperature=temperature,
                cancelled=cancelled,
                after_word=after_word,
                reads=self.reads,
            )

    def think_ahead(
        self, found: NextWords, text: str, k: int, temperature: float, cancelled: Callable[[], bool]
    ) -> int:
        """Work out the next words after each of the AHEAD likeliest next keys, so the next key finds them ready.

        The likeliest keys are the next letters of the likeliest words `found` after `text` (a space
        where a word is whole). Work for older weights is dropped at the next swap. Returns how many
        texts were worked out.
        """
        keys = list(
            dict.fromkeys(w.text[len(found.typed)] if len(w.text) > len(found.typed) else " " for w in found.words)
        )
        done = 0
        with self._lock:
            version = self._version
        with self.leased() as model, torch_threads(1):  # what the trainer and the key leave: one core at most
            for key in keys[:AHEAD]:
                ahead = (text + key, k, temperature)
                if cancelled() or ahead in self._ahead:
                    continue
                words = next_words(
                    model, self.tokenizer, ahead[0], k=k, temperature=temperature, cancelled=cancelled, reads=self.reads
                )
                with self._lock:
                    if words is None or version != self._version:
                        break
                    self._ahead[ahead] = words
                done += 1
        return done

    def word_examples(self, text: str) -> WordExamples:
        """One training example per word of `text`: its p(word) and -log p(word), the sum of its tokens' losses."""
        with self.leased() as model:
            return word_examples(model, self.tokenizer, text)

    @torch.no_grad()
    def logits(self, ids: list[int]) -> torch.Tensor:
        """Logits (T, V) at every position of the last block_size of `ids`."""
        ctx, _ = context(ids or [self.tokenizer.eot_id], self.config.block_size)
        logits, _, _ = self.model(torch.tensor([ctx], dtype=torch.long))
        rows: torch.Tensor = logits[0].float()
        return rows

    def prob(self, ids: list[int], target: int) -> float:
        """p(target | ids)."""
        return target_prob(self.model, ids, target)

    def surprisal(self, text: str, k: int = 8) -> Surprisal:
        """Each token of `text` with its p, -log p and rank, and the top-k before it."""
        return surprisal(self.model, self.tokenizer, self.tokenizer.encode(text), k)

    def temperature(self, text: str, temperature: float, k: int) -> list[TempRow]:
        """The top-k next tokens after `text` as logits, logits / T and softmax."""
        return temperature_table(self.logits(self.tokenizer.encode(text))[-1], temperature, k)

    def logit_lens(self, text: str, k: int) -> LogitLens:
        """Each layer's top-k next tokens after `text`: the residual stream through the final norm and head."""
        with self.leased() as model:
            return logit_lens(model, self.tokenizer, self.tokenizer.encode(text), k)

    def lens_words(self, text: str, k: int, cancelled: Callable[[], bool] | None = None) -> LensWords | None:
        """Each layer's top-k next words after `text` (the Next word pane's search, layer by layer); None if
        cancelled. Several searches: off the UI thread."""
        with self.leased() as model:
            return lens_words(model, self.tokenizer, text, k, cancelled)

    def describe(self, text: str) -> list[TokenInfo]:
        """The ids the model reads for `text`, with specials and byte fragments marked."""
        return describe_ids(self.tokenizer, self.tokenizer.encode(text))

    def compare(self, path: str | Path, prompt: str, sources: list[str], k: int) -> Comparison:
        """This model beside another checkpoint (loads it, and the run's text: slow, off the UI thread)."""
        from tui_gpt.probes.compare import compare

        with self.leased() as model:
            return compare(model, self.tokenizer, Path(path), prompt, sources, k)

    def sample(
        self, text: str, n: int, temperature: float = 0.8, seed: int = 0, cancelled: Callable[[], bool] | None = None
    ) -> list[int] | None:
        """`n` sampled tokens after `text` (greedy when temperature is 0); None if `cancelled` said so mid-way."""
        ids = self.tokenizer.encode(text) or [self.tokenizer.eot_id]
        with self.leased() as model, torch_threads(1 if self.large else None):
            try:
                return list(sample(model, ids, n, temperature=temperature, seed=seed, cancelled=cancelled))
            except Cancelled:
                return None


def ui_threads() -> None:
    """One torch thread for the UI: on 2 cores the trainer needs the other (measured)."""
    torch.set_num_threads(1)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on `n` torch threads (None: as it is), then put the calling thread's count back.

    torch's thread count belongs to the thread that sets it (measured: a worker's
    set_num_threads(2) leaves the UI thread at 1), so a thread's search never changes another's.
    """
    if n is None or n == torch.get_num_threads():  # setting it rebuilds thread pools: only when it differs
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fast_dtype(config: GPTConfig, rounds: int = 5) -> torch.dtype:
    """bf16 where one block of this shape answers a token BF16_GAIN times faster than in fp32 (measured
    here, best of `rounds`: CPUs without native bf16 are slower in it), else fp32."""
    block = Block(config).eval()
    x = torch.randn(1, 8, config.n_embd)
    best: dict[torch.dtype, float] = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            block.to(dtype)
            xs = x.to(dtype)
            _, past = block.forward_cached(xs, None)
            one = xs[:, -1:]
            times = []
            for _ in range(rounds + 1):  # the first round warms up
                t0 = time.perf_counter()
                block.forward_cached(one, past)
                times.append(time.perf_counter() - t0)
            best[dtype] = min(times[1:])
    return torch.bfloat16 if best[torch.float32] >= BF16_GAIN * best[torch.bfloat16] else torch.float32
