"""The GPT itself: the causal mask, the two attention paths, and that it can learn at all."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt import make_model

from tui_gpt.engine.model import GPT, GPTConfig

V, T = 24, 16  # make_model's vocabulary and window
POSITIONS = (0, 3, 7, 14)


def tokens_and_future_change(t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of tokens, and a copy in which every token after position t is different."""
    g = torch.Generator().manual_seed(seed + t)
    x = torch.randint(V, (2, T), generator=g)
    x2 = x.clone()
    x2[:, t + 1 :] = (x[:, t + 1 :] + torch.randint(1, V, (2, T - t - 1), generator=g)) % V
    assert (x2[:, t + 1 :] != x[:, t + 1 :]).all()
    return x, x2


@pytest.mark.parametrize("want_attn", [False, True], ids=["fast-path", "attention-path"])
@pytest.mark.parametrize("t", POSITIONS)
def test_causal_logits_ignore_the_future(t, want_attn):
    model = make_model(causal=True)
    x, x2 = tokens_and_future_change(t)
    with torch.no_grad():
        a, _, _ = model(x, want_attn=want_attn)
        b, _, _ = model(x2, want_attn=want_attn)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    # ...and the change is visible where it is allowed to be: the test is not vacuous.
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().max() > 1e-3


@pytest.mark.parametrize("t", POSITIONS)
def test_causal_under_cpu_bf16_autocast(t):
    # Under CPU autocast the model takes its explicit path even without want_attn.
    model = make_model(causal=True)
    x, x2 = tokens_and_future_change(t)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, _, _ = model(x)
        b, _, _ = model(x2)
    torch.testing.assert_close(a[:, : t + 1].float(), b[:, : t + 1].float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("want_attn", [False, True], ids=["fast-path", "attention-path"])
@pytest.mark.parametrize("t", POSITIONS[:-1])
def test_non_causal_logits_see_the_future(t, want_attn):
    model = make_model(causal=False)
    x, x2 = tokens_and_future_change(t)
    with torch.no_grad():
        a, _, _ = model(x, want_attn=want_attn)
        b, _, _ = model(x2, want_attn=want_attn)
    assert (a[:, : t + 1] - b[:, : t + 1]).abs().max() > 1e-4


@pytest.mark.parametrize("causal", [True, False])
def test_attention_weights(causal):
    model = make_model(causal=causal)
    x, _ = tokens_and_future_change(0)
    with torch.no_grad():
        _, _, attns = model(x, want_attn=True)
    assert len(attns) == model.config.n_layer
    for att in attns:
        assert att.shape == (2, model.config.n_head, T, T)
        assert (att >= 0).all()
        torch.testing.assert_close(att.sum(-1), torch.ones(2, model.config.n_head, T), rtol=0, atol=1e-5)
        above = torch.triu(att, diagonal=1)
        if causal:
            assert torch.equal(above, torch.zeros_like(above)), "causal attention looks at the future"
        else:
            assert above.abs().max() > 0


def test_no_attention_returned_unless_asked():
    model = make_model()
    x, _ = tokens_and_future_change(0)
    with torch.no_grad():
        _, loss, attns = model(x)
    assert loss is None
    assert attns == []


@pytest.mark.parametrize("causal", [True, False])
def test_fast_path_and_attention_path_agree(causal):
    model = make_model(causal=causal)
    x, _ = tokens_and_future_change(5)
    y = torch.roll(x, -1, dims=1)
    with torch.no_grad():
        a, loss_a, _ = model(x, y)
        b, loss_b, _ = model(x, y, want_attn=True)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-6)


def test_shorter_sequences_and_too_long_ones():
    model = make_model()
    x, _ = tokens_and_future_change(0)
    with torch.no_grad():
        full, _, _ = model(x)
        short, _, attns = model(x[:, :5], want_attn=True)
    assert short.shape == (2, 5, V)
    assert attns[0].shape[-2:] == (5, 5)
    torch.testing.assert_close(short, full[:, :5], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, T + 1, dtype=torch.long))


def test_loss_is_mean_cross_entropy_and_starts_near_ln_v():
    model = make_model()
    x, _ = tokens_and_future_change(0)
    y = torch.roll(x, -1, dims=1)
    with torch.no_grad():
        logits, loss, _ = model(x, y)
    expected = torch.nn.functional.cross_entropy(logits.view(-1, V), y.view(-1))
    torch.testing.assert_close(loss, expected)
    # A fresh model knows nothing: its loss is close to the uniform ln V.
    assert abs(loss.item() - torch.log(torch.tensor(float(V))).item()) < 0.1


def test_weights_are_tied():
    model = make_model()
    assert model.lm_head.weight is model.transformer.wte.weight
    n_all = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == n_all
    assert model.num_params() == n_all - model.transformer.wpe.weight.numel()


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32))
    opt = model.configure_optimizer(lr=1e-2, weight_decay=0.0, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(32, (4, 16), generator=g)
    y = torch.randint(32, (4, 16), generator=g)  # random targets: only memorising can fit them
    model.train()
    losses = []
    for _ in range(300):
        _, loss, _ = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if loss.item() < 0.01:
            break
    assert losses[0] > 3.0
    assert losses[-1] < 0.05, f"did not overfit: final loss {losses[-1]:.4f} after {len(losses)} steps"


def test_optimizer_decays_matrices_only():
    model = make_model()
    opt = model.configure_optimizer(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    n_groups = len(decay["params"]) + len(no_decay["params"])
    assert n_groups == len(list(model.parameters()))
