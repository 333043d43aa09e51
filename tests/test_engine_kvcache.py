"""The KV cache gives the full forward's logits: token by token, in chunks, batched, and past the window."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt import make_model

from tui_gpt.engine.model import GPT, Cancelled, KVCache
from tui_gpt.probes.predict import context, sample

TOL = 1e-5
BATCHED_TOL = 1e-4


def kv_model(causal: bool = True, block_size: int = 12) -> GPT:
    """Larger weights than the init's, so that a wrong position or mask shows in the logits."""
    return make_model(causal, vocab_size=11, block_size=block_size, scale=8.0)


def full_logits(model: GPT, ids: list[int]) -> torch.Tensor:
    logits, _, _ = model(torch.tensor([ids]))
    return logits[0]  # (T, V)


def test_token_by_token_and_chunks_equal_full_forward():
    model = kv_model()
    ids = torch.randint(0, 11, (12,), generator=torch.Generator().manual_seed(1)).tolist()
    want = full_logits(model, ids)
    cache = None
    got = []
    for chunk in ([ids[:3]], [ids[3:4]], [ids[4:9]], [ids[9:10]], [ids[10:12]]):
        logits, cache = model.forward_cached(torch.tensor(chunk), cache)
        got.append(logits[0])
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(got), want, atol=TOL, rtol=0)


def test_batched_candidates_share_one_prefix():
    model = kv_model()
    prefix = [1, 2, 3, 4, 5]
    cands = [[6], [7, 8, 9], [10, 0], [3, 3, 3, 3]]
    _, cache = model.forward_cached(torch.tensor([prefix]))
    width = max(map(len, cands))
    batch = torch.tensor([c + [0] * (width - len(c)) for c in cands])  # right-padded
    logits, _ = model.forward_cached(batch, cache)  # (4, width, V)
    for row, c in enumerate(cands):
        want = full_logits(model, prefix + c)[len(prefix) :]
        # A padded batch runs other matrix shapes, so its sums round differently: 1.05e-5 on an AMX Xeon,
        # 3.0e-5 here with another thread count (logits near 20). The incremental cache itself holds 1e-5.
        torch.testing.assert_close(logits[row, : len(c)], want, atol=BATCHED_TOL, rtol=0)


def test_too_long_and_non_causal_are_refused():
    model = kv_model()
    _, cache = model.forward_cached(torch.tensor([[1] * 10]))
    with pytest.raises(ValueError, match="block_size"):
        model.forward_cached(torch.tensor([[1, 2, 3]]), cache)
    with pytest.raises(ValueError, match="causal"):
        kv_model(causal=False).forward_cached(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="causal"):
        kv_model(causal=False).forward_candidates(torch.tensor([1]), cache, cache, torch.tensor([0]))


def old_sample(model: GPT, ids: list[int], n: int, temperature: float, seed: int) -> list[int]:
    """The sampler before the cache: a full forward over the window for every token."""
    gen = torch.Generator().manual_seed(seed)
    ids = list(ids)
    out = []
    for _ in range(n):
        ctx, _ = context(ids, model.config.block_size)
        last = full_logits(model, ctx)[-1]
        if temperature <= 0:
            nxt = int(last.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen))
        ids.append(nxt)
        out.append(nxt)
    return out


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("causal", [True, False])
def test_generate_with_cache_equals_old_sampling_past_the_window(temperature, causal):
    model = kv_model(causal=causal)
    n = 30  # 3 + 30 tokens: the window (12) slides many times
    got = list(sample(model, [1, 2, 3], n, temperature=temperature, seed=5))
    assert got == old_sample(model, [1, 2, 3], n, temperature, seed=5)


def test_sliding_window_logits_match_the_window_forward():
    """Past block_size, sample rebuilds from the window: its logits are the window's full forward."""
    model = kv_model()
    ids = torch.randint(0, 11, (20,), generator=torch.Generator().manual_seed(2)).tolist()
    window = ids[-12:]
    _, cache = model.forward_cached(torch.tensor([window[:-1]]))
    step, _ = model.forward_cached(torch.tensor([window[-1:]]), cache)
    torch.testing.assert_close(step[0, -1], full_logits(model, window)[-1], atol=TOL, rtol=0)


def _padded(own: list, layer: int, j: int, length: int, nh: int, hs: int) -> torch.Tensor:
    """One candidate's keys (j=0) or values (j=1) of `layer`, zero-padded to `length`: (nh, length, hs)."""
    got = [kv[layer][j] for kv in own]  # each (nh, 1, hs)
    return torch.cat([torch.zeros(nh, 0, hs), *got, *[torch.zeros(nh, 1, hs)] * (length - len(got))], dim=1)


def test_forward_candidates_grow_each_candidate_by_one_token_from_its_own_cache():
    """Candidates of different lengths in one batch, each extended token by token, match the full forward."""
    model = kv_model()
    n_layer, nh, hs = model.config.n_layer, model.config.n_head, model.config.n_embd // model.config.n_head
    prefix = [4, 3, 2, 1]
    cands = [[6], [7, 8, 9], [10, 0], [3, 3, 3, 3, 5]]
    _, cache = model.forward_cached(torch.tensor([prefix]))
    own: list[list] = [[] for _ in cands]  # per candidate, per token so far: per layer (k, v)
    for it in range(10):
        # Staggered starts: rows of the same batch hold different numbers of earlier tokens (real padding).
        rows = [b for b, c in enumerate(cands) if b <= it and len(own[b]) < len(c)]
        if not rows:
            break
        L = max(len(own[b]) for b in rows)
        own_cache = KVCache(
            [torch.stack([_padded(own[b], i, 0, L, nh, hs) for b in rows]) for i in range(n_layer)],
            [torch.stack([_padded(own[b], i, 1, L, nh, hs) for b in rows]) for i in range(n_layer)],
        )
        idx = torch.tensor([cands[b][len(own[b])] for b in rows])
        logits, new = model.forward_candidates(idx, cache, own_cache, torch.tensor([len(own[b]) for b in rows]))
        for r, b in enumerate(rows):
            want = full_logits(model, prefix + cands[b][: len(own[b]) + 1])[-1]
            # The attention is summed in three parts (prefix, own, new): fp32 rounding of logits near 10.
            torch.testing.assert_close(logits[r], want, atol=TOL, rtol=TOL)
            own[b].append([(new.k[i][r], new.v[i][r]) for i in range(n_layer)])
    assert [len(o) for o in own] == [len(c) for c in cands]
    assert cache.length == len(prefix)  # the shared prefix is left as it was


def test_a_pass_gives_up_between_blocks_and_an_uncancelled_one_is_unchanged():
    model = kv_model()  # two blocks
    ids = torch.tensor([[1, 2, 3, 4]])
    plain, plain_cache = model.forward_cached(ids)
    asked = []

    def never() -> bool:
        asked.append(1)
        return False

    checked, checked_cache = model.forward_cached(ids, None, never)
    assert torch.equal(checked, plain)
    assert all(torch.equal(a, b) for a, b in zip(checked_cache.k, plain_cache.k, strict=True))
    assert len(asked) == 3  # before each block and before the head
    asked.clear()
    with pytest.raises(Cancelled):  # the answer stops being wanted after the first block
        model.forward_cached(ids, None, lambda: bool(asked.append(1)) or len(asked) > 1)
    assert len(asked) == 2
    own = KVCache([torch.zeros(2, 2, 1, 8)] * 2, [torch.zeros(2, 2, 1, 8)] * 2)
    args = (torch.tensor([5, 6]), plain_cache, own, torch.tensor([0, 1]))
    torch.testing.assert_close(model.forward_candidates(*args, never)[0], model.forward_candidates(*args)[0])
    with pytest.raises(Cancelled):
        model.forward_candidates(*args, lambda: True)
