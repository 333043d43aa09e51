"""The lab's experiments, end to end on a small seeded text: the mask leak and one-example steps."""

import pytest
import torch

from tui_gpt.engine.session import RunSpec, open_run
from tui_gpt.probes.predict import analyze

STEPS = 300


def _run(causal: bool):
    spec = RunSpec(
        sources=["fables"],
        tokenizer="char",
        n_layer=1,
        n_head=4,
        n_embd=64,
        block_size=16,
        causal=causal,
        train={
            "seed": 0,
            "dtype": "float32",
            "device": "cpu",
            "batch_size": 8,
            "lr": 3e-3,
            "eval_interval": 0,
            "warmup_steps": 10,
            "decay_steps": 10**6,
        },
    )
    run = open_run(spec)
    for _ in run.trainer.run(steps=STEPS):
        pass
    return run


@pytest.fixture(scope="module")
def masked():
    return _run(causal=True)


@pytest.fixture(scope="module")
def leaky():
    return _run(causal=False)


def test_without_the_mask_the_train_loss_collapses(masked, leaky):
    # Each evaluated with the mask it trained with: the leaky model copies the next token.
    masked_train = masked.trainer.evaluate(iters=10)["train"]
    leaky_train = leaky.trainer.evaluate(iters=10)["train"]
    assert leaky_train < 0.5 * masked_train, (leaky_train, masked_train)


def test_a_model_trained_without_the_mask_is_worse_once_the_mask_is_back(masked, leaky):
    leaky.trainer.set_causal(True)
    try:
        leaky_val = leaky.trainer.evaluate(iters=10)["val"]
    finally:
        leaky.trainer.set_causal(False)
    masked_val = masked.trainer.evaluate(iters=10)["val"]
    assert leaky_val > masked_val + 0.3, (leaky_val, masked_val)


def test_one_step_on_one_example_raises_p_target(masked):
    tok, trainer = masked.tokenizer, masked.trainer
    ids = tok.encode("The quick brown fox")
    prefix, target = ids[:-1], ids[-1]

    def p() -> float:
        guesses = analyze(trainer.model, tok, prefix, k=tok.vocab_size, attention=False).prediction.guesses
        return next(g.prob for g in guesses if g.id == target)

    step = trainer.step
    before = p()
    loss = trainer.step_on(ids)
    after = p()
    assert after > before
    assert loss == pytest.approx(-torch.log(torch.tensor(before)).item(), rel=1e-4)
    assert trainer.step == step  # a probe, not a training step
