"""Shared fixtures for the engine tests: a tiny text, tiny fast runs, a small trained model."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from tui_gpt.engine.session import RunSpec, open_run
from tui_gpt.errors import TuiGptError

torch.set_num_threads(1)

TINY_TEXT = (
    "The fox ran to the river. The dog sat by the door.\n"
    "The hen found a seed and planted it, and the wheat grew tall.\n"
) * 8

# Small enough that a step takes about a millisecond on one CPU thread.
TINY_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}
FAST_TRAIN = {
    "batch_size": 4,
    "lr": 1e-2,
    "warmup_steps": 2,
    "decay_steps": 40,
    "eval_interval": 0,
    "eval_iters": 2,
    "dtype": "float32",
    "device": "cpu",
    "seed": 1337,
}


@pytest.fixture(scope="session", autouse=True)
def token_cache(tmp_path_factory):
    """Token caches go to a temporary folder, never the user's ~/.cache (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("token-cache")
    os.environ["TUI_GPT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def run_registry(tmp_path_factory):
    """Runs are recorded in a temporary registry, never the user's (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("tui-gpt-data")
    os.environ["TUI_GPT_DATA"] = str(path)
    return path / "runs.sqlite"


@pytest.fixture(scope="session")
def tiny_text() -> str:
    return TINY_TEXT


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def make_spec():
    """Build a RunSpec for a tiny float32 CPU run; keyword arguments override model or train settings."""

    def make(sources=("fables",), tokenizer="char", **over) -> RunSpec:  # fables: small, and the same everywhere
        model = {k: over.pop(k) for k in [*TINY_MODEL, "dropout", "causal"] if k in over}
        return RunSpec(
            sources=list(sources),
            tokenizer=tokenizer,
            **{**TINY_MODEL, **model},
            train={**FAST_TRAIN, **over},
        )

    return make


@pytest.fixture
def fables_run(make_spec):
    """A fresh, untrained run on the bundled fables with the char tokenizer."""
    return open_run(make_spec())


@pytest.fixture(scope="session")
def trained():
    """A tiny char model trained a little on the fables: (model, tokenizer, data), in eval mode."""
    spec = RunSpec(tokenizer="char", n_layer=1, n_head=2, n_embd=32, block_size=32, train={**FAST_TRAIN})
    run = open_run(spec)
    for _ in run.trainer.run(steps=60):
        pass
    run.trainer.model.eval()
    return run.trainer.model, run.tokenizer, run.data


@pytest.fixture
def one_line_error():
    """Check that a TuiGptError is one line and names `name`; returns the message."""

    def check(exc: BaseException, name: str) -> str:
        assert isinstance(exc, TuiGptError), f"{type(exc).__name__}: {exc}"
        msg = str(exc)
        assert msg.strip(), "empty error message"
        assert "\n" not in msg, f"message is not one line: {msg!r}"
        assert name in msg, f"{name!r} not named in {msg!r}"
        return msg

    return check


@pytest.fixture
def no_hang():
    """A load that blocks (a FIFO, /dev/zero) fails the test instead of hanging it."""

    def timeout(signum, frame):
        raise TimeoutError("hung: a hostile file was read or waited on")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
