"""--dtype auto is measured on a throwaway model, cached per machine and shape, and says what it chose."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from tui_gpt import autotune
from tui_gpt.model import GPT, GPTConfig
from tui_gpt.session import open_run
from tui_gpt.settings import cores

SHAPE = GPTConfig(vocab_size=30, block_size=16, n_layer=1, n_head=2, n_embd=16)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / autotune.CACHE_FILE


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TUI_GPT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert autotune.cache_dir() == tmp_path / "xdg" / "tui-gpt"
    monkeypatch.setenv("TUI_GPT_CACHE", str(tmp_path / "mine"))
    assert autotune.cache_dir() == tmp_path / "mine"


def test_trial_picks_a_candidate_and_leaves_rng_and_threads_alone(cache):
    torch.manual_seed(5)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    choice = autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.3)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert choice.dtype in ("float32", "bfloat16") and choice.sdpa in (True, False)
    assert "fastest" in choice.note and "ms/step" in choice.note and "\n" not in choice.note
    # Every candidate was timed, and the answer is written down per machine and shape.
    assert all(label in choice.note for label in ("fp32 SDPA", "fp32 explicit", "bf16 SDPA", "bf16 explicit"))
    entries = json.loads(cache.read_text())["entries"]
    (key,) = entries
    assert autotune.cpu_model() in key and torch.__version__ in key and "V30 T16 L1 H2 C16 B4" in key


def test_the_second_choice_comes_from_the_cache(cache):
    first = autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.2)
    t0 = time.perf_counter()
    again = autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.2)
    assert time.perf_counter() - t0 < 1  # no trial: a trial alone takes its 0.2 s
    assert (again.dtype, again.sdpa) == (first.dtype, first.sdpa) and again.note.endswith("(cached)")
    # Another shape is another trial.
    other = autotune.choose(GPTConfig(**{**SHAPE.to_dict(), "n_embd": 32}), 4, torch.device("cpu"), seconds=0.2)
    assert not other.note.endswith("(cached)")
    assert len(json.loads(cache.read_text())["entries"]) == 2


def test_an_old_choice_is_measured_again(cache, monkeypatch):
    autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.2)
    now = time.time()
    monkeypatch.setattr(autotune.time, "time", lambda: now + autotune.CACHE_TTL_S + 1)
    assert not autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.2).note.endswith("(cached)")


def test_a_corrupt_cache_is_measured_again(cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    choice = autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.2)
    assert not choice.note.endswith("(cached)")
    assert json.loads(cache.read_text())["version"] == autotune.CACHE_VERSION


def test_thread_counts_are_tried_and_all_cores_win_ties():
    counts = autotune.thread_counts()
    assert counts[0] == cores() and counts == sorted(set(counts), reverse=True)
    choice = autotune.choose(SHAPE, 4, torch.device("cpu"), ["float32"], [True], counts, seconds=0.2)
    assert choice.threads in counts


def test_both_attention_paths_compute_the_same_loss():
    torch.manual_seed(0)
    model = GPT(SHAPE)
    x = torch.randint(30, (3, 16))
    losses = []
    for sdpa in (True, False):
        autotune.set_attention(model, sdpa)
        losses.append(model(x, x)[1].item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_trainer_says_what_it_chose(make_spec):
    auto = open_run(make_spec(dtype="auto")).trainer
    assert auto.choice_note.startswith("auto: ") and auto.dtype in (torch.float32, torch.bfloat16)
    forced = open_run(make_spec(dtype="float32")).trainer
    assert forced.dtype == torch.float32 and forced.choice_note == "float32 (--dtype)"


def test_auto_does_not_change_the_run(make_spec):
    """The trial trains a throwaway copy: the real run starts from the same weights and batches."""
    a = open_run(make_spec(dtype="auto")).trainer
    b = open_run(make_spec(dtype="float32")).trainer
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


def test_threads_change_between_steps(make_spec):
    trainer = open_run(make_spec()).trainer
    before = torch.get_num_threads()
    try:
        trainer.set_threads(2)
        trainer.train_step()
        assert torch.get_num_threads() == 2
        trainer.set_threads(1)
        trainer.train_step()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_forced_threads_and_the_thread_count_is_not_saved(make_spec):
    before = torch.get_num_threads()
    try:
        trainer = open_run(make_spec(threads=1)).trainer
        assert torch.get_num_threads() == 1
        assert "threads" not in trainer.config.to_dict()
    finally:
        torch.set_num_threads(before)


# ---- the cache is untrusted input --------------------------------------------------------------


def fixed_times(mconf, batch_size, device, candidates, seconds=autotune.TRIAL_SECONDS):
    """time_candidates without the timing: the first candidate is fastest, every time."""
    return {c: 0.001 * (i + 1) for i, c in enumerate(candidates)}


def rewrite(cache, change) -> None:
    """Apply `change` to the cache file's JSON in place, or write what it returns (str or bytes) instead."""
    data = json.loads(cache.read_text())
    new = change(data)
    if isinstance(new, bytes | str):
        cache.write_bytes(new if isinstance(new, bytes) else new.encode())
    else:
        cache.write_text(json.dumps(data))


HOSTILE = {
    "a why of 100,000 characters": lambda d: [e.update(why="x" * 100_000) for e in d["entries"].values()],
    "ANSI and OSC escapes": lambda d: [
        e.update(why="\x1b[2J\x1b]8;;https://example.com\x07click\x1b]8;;\x07\x9b31m") for e in d["entries"].values()
    ],
    "a newline": lambda d: [e.update(why="fp32\nforged line") for e in d["entries"].values()],
    "entries a list": lambda d: d.update(entries=[1, 2]),
    "entries a string": lambda d: d.update(entries="x"),
    "an entry a list": lambda d: d.update(entries={k: [] for k in d["entries"]}),
    "threads beyond the machine": lambda d: [e.update(threads=100_000) for e in d["entries"].values()],
    "threads true": lambda d: [e.update(threads=True) for e in d["entries"].values()],
    "sdpa 1": lambda d: [e.update(sdpa=1) for e in d["entries"].values()],
    "a NaN time": lambda d: [e.update(time=float("nan")) for e in d["entries"].values()],
    "a list at the top": lambda d: "[]",
    "bad UTF-8": lambda d: b'{"version": 1, "entries": {"\xff": 1}}',
    "nested 100,000 deep": lambda d: "[" * 100_000 + "]" * 100_000,
    "2 MB": lambda d: json.dumps({**d, "pad": "x" * (2 << 20)}),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_cache_is_ignored_and_rewritten(name, cache, monkeypatch):
    monkeypatch.setattr(autotune, "time_candidates", fixed_times)
    first = autotune.choose(SHAPE, 4, torch.device("cpu"))
    rewrite(cache, HOSTILE[name])
    t0 = time.perf_counter()
    again = autotune.choose(SHAPE, 4, torch.device("cpu"))
    assert time.perf_counter() - t0 < 1
    assert not again.note.endswith("(cached)")  # measured again: the entry was not believed
    assert again.note == first.note and again.note.isprintable() and len(again.note) <= autotune.WHY_MAX
    data = json.loads(cache.read_text())  # rewritten: the right shape, and only what choose writes
    assert data["version"] == autotune.CACHE_VERSION and len(data["entries"]) == 1
    (entry,) = data["entries"].values()
    assert entry["why"] == first.note and autotune.choose(SHAPE, 4, torch.device("cpu")).note.endswith("(cached)")


def test_a_cache_that_is_a_fifo_is_never_read(cache, monkeypatch):
    monkeypatch.setattr(autotune, "time_candidates", fixed_times)
    cache.parent.mkdir(parents=True)
    os.mkfifo(cache)  # reading it would block forever
    assert not autotune.choose(SHAPE, 4, torch.device("cpu")).note.endswith("(cached)")
    assert cache.is_file() and json.loads(cache.read_text())["version"] == autotune.CACHE_VERSION


def test_a_cached_note_that_looks_like_markup_is_printed_as_it_is(cache, monkeypatch, tmp_path, tiny_text, capsys):
    from tui_gpt.cli import main

    monkeypatch.setattr(autotune, "time_candidates", fixed_times)
    (tmp_path / "t.txt").write_text(tiny_text, encoding="utf-8")
    argv = ["train", str(tmp_path / "t.txt"), "--steps", "1", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "--threads", "1",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 0
    rewrite(cache, lambda d: [e.update(why="[/] [bold]fp32[/bold] [link=x]") for e in d["entries"].values()])
    capsys.readouterr()
    assert main(argv) == 0  # was a MarkupError
    err = capsys.readouterr().err
    assert "auto: [/] [bold]fp32[/bold] [link=x] (cached)" in err and "Traceback" not in err
