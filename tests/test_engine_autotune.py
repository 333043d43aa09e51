"""--dtype auto is measured on a throwaway model, cached per machine and shape, checked against its
runners-up on the real run, and says what it chose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from tui_gpt.engine import autotune, cpuload, runcheck
from tui_gpt.engine.model import GPT, GPTConfig
from tui_gpt.engine.session import open_run
from tui_gpt.settings import cores

SHAPE = GPTConfig(vocab_size=30, block_size=16, n_layer=1, n_head=2, n_embd=16)
REAL_OTHERS = cpuload.Load.others


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_CACHE", str(tmp_path / "cache"))
    # Others share the test machine: a quiet one unless a test loads it itself (see test_a_trial_under_load_*).
    monkeypatch.setattr(cpuload.Load, "others", lambda self: 0.0)
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
    return {c: [0.001 * (i + 1)] * autotune.MIN_ROUNDS for i, c in enumerate(candidates)}


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
    "a runner-up beyond the machine": lambda d: [
        e.update(alts=[["float32", True, 100_000]]) for e in d["entries"].values()
    ],
    "runners-up a string": lambda d: [e.update(alts="fp32") for e in d["entries"].values()],
    "a runner-up of two": lambda d: [e.update(alts=[["float32", True]]) for e in d["entries"].values()],
    "a negative ms/step": lambda d: [e.update(ms=-1) for e in d["entries"].values()],
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
    from tui_gpt.commands.cli import main

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


# ---- the trial: medians of interleaved rounds, the warm-up left out ----------------------------


@pytest.mark.parametrize(("step_s", "rounds"), [(0.05, autotune.MIN_ROUNDS), (0.5, 1)])
def test_the_trial_leaves_out_the_warm_up_and_takes_turns(monkeypatch, step_s, rounds):
    """A step of 50 ms: rounds go on past the 0.5 s budget to MIN_ROUNDS. Of 500 ms (a big model):
    the trial stops at TRIAL_MAX times its budget, after one timed round."""
    calls: list[autotune.Way] = []
    now = [0.0]

    def step(model, opt, x, y, way):
        calls.append(way)
        now[0] += step_s
        return 1.0 if calls.count(way) == 1 else 0.001  # each candidate's first step is slow

    monkeypatch.setattr(autotune, "_timed_step", step)
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: now[0])
    cands = [("float32", True, 1), ("float32", False, 1), ("bfloat16", True, 1)]
    samples = autotune.time_candidates(SHAPE, 4, torch.device("cpu"), cands, seconds=0.5)
    assert all(v == [0.001] * rounds for v in samples.values())  # the warm-up round is not counted
    # Each round starts one candidate later.
    assert [calls[3 * r] for r in range(rounds + 1)] == (cands * 2)[: rounds + 1]


def test_a_far_slower_candidate_leaves_the_trial(monkeypatch):
    slow = ("float32", True, 2)
    now = [0.0]

    def step(model, opt, x, y, way):
        now[0] += 0.05
        return 0.01 if way == slow else 0.001

    monkeypatch.setattr(autotune, "_timed_step", step)
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: now[0])
    cands = [("float32", True, 1), ("bfloat16", True, 1), slow]
    samples = autotune.time_candidates(SHAPE, 4, torch.device("cpu"), cands, seconds=0.5)
    assert len(samples[slow]) == 1 and len(samples[cands[0]]) == autotune.MIN_ROUNDS  # 10x slower: one round


def test_the_note_gives_rounds_and_spread(cache):
    choice = autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.2)
    assert "rounds)" in choice.note and "±" in choice.note
    assert choice.ms > 0 and choice.way not in choice.alts and 1 <= len(choice.alts) <= 3


# ---- a trial on a busy machine is not cached -------------------------------------------------------


@pytest.fixture
def spinner():
    """Another process that keeps a core busy while the test runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.2)  # started, and spinning
    yield proc
    proc.kill()
    proc.wait()


def test_the_load_meter_sees_another_process(monkeypatch, spinner):
    monkeypatch.setattr(cpuload.Load, "others", REAL_OTHERS)
    load = cpuload.Load()
    if load.start is None:
        pytest.skip("no /proc/stat here: the load is not judged")
    time.sleep(0.5)
    assert load.others() > cpuload.BUSY_CORES


def test_a_trial_under_load_is_not_cached(cache, monkeypatch, spinner):
    monkeypatch.setattr(cpuload.Load, "others", REAL_OTHERS)
    if cpuload.Load().start is None:
        pytest.skip("no /proc/stat here: the load is not judged")
    choice = autotune.choose(SHAPE, 4, torch.device("cpu"), seconds=0.3)
    assert "(not cached: the machine was busy, others used" in choice.note
    assert not cache.exists()


def test_where_the_load_is_unknown_the_choice_is_cached(cache, monkeypatch):
    monkeypatch.setattr(cpuload.Load, "others", REAL_OTHERS)
    monkeypatch.setattr(cpuload, "_sample", lambda cpus: None)  # not Linux
    monkeypatch.setattr(autotune, "time_candidates", fixed_times)
    assert "not cached" not in autotune.choose(SHAPE, 4, torch.device("cpu")).note
    assert cache.exists()


# ---- the real run checks the choice against its runners-up ---------------------------------------

FP32_SDPA, FP32_EXPLICIT, BF16_SDPA = ("float32", True, 1), ("float32", False, 1), ("bfloat16", True, 1)


def used_sdpa(trainer) -> bool | None:
    return next(m.use_sdpa for m in trainer.model.modules() if hasattr(m, "use_sdpa"))


def real_speeds(monkeypatch, trainer_box: list, ms: dict) -> list:
    """Make each real step take `ms[way]` as far as the check can tell, whatever its true speed; return
    the ways the steps really ran (dtype and attention path of the trainer's model)."""
    observe, ran = runcheck.DtypeCheck.observe, []

    def fake(self, seconds, threads):
        if trainer_box:
            tr = trainer_box[0]
            ran.append((str(tr.dtype).removeprefix("torch."), used_sdpa(tr)))
        return observe(self, ms[self.current] / 1000, threads)

    monkeypatch.setattr(runcheck.DtypeCheck, "observe", fake)
    return ran


@pytest.fixture
def auto_run(make_spec, monkeypatch):
    """A tiny auto run on one thread whose trial ranks fp32 SDPA, fp32 explicit, bf16 SDPA, bf16 explicit."""
    monkeypatch.setattr(autotune, "time_candidates", fixed_times)
    torch.set_num_threads(1)
    return lambda: open_run(make_spec(dtype="auto", decay_steps=400)).trainer


CHECK_STEPS = runcheck.START + 3 * runcheck.ROUNDS * runcheck.BLOCK


def test_the_real_run_switches_to_a_runner_up_that_is_faster_there(auto_run, monkeypatch, cache):
    box: list = []
    ran = real_speeds(monkeypatch, box, {FP32_SDPA: 30.0, FP32_EXPLICIT: 29.0, BF16_SDPA: 20.0})
    tr = auto_run()
    box.append(tr)
    assert tr.choice.way == FP32_SDPA and tr.choice.alts == [FP32_EXPLICIT, BF16_SDPA]
    notes = [ev.note for ev in tr.run(steps=CHECK_STEPS + 10) if ev.note]
    assert notes == [tr.choice_note]  # said once
    said = "auto: switched to bf16 SDPA: 20.0 ms/step against fp32 SDPA 30.0 ms/step (expected 1.0) in steps 51-"
    assert notes[0].startswith(said)
    # Each way really ran, a block at a time, and the winner runs from then on.
    block = [w for w in [("float32", True), ("float32", False), ("bfloat16", True)] for _ in range(runcheck.BLOCK)]
    assert ran == [("float32", True)] * runcheck.START + block * runcheck.ROUNDS
    assert (tr.dtype, used_sdpa(tr)) == (torch.bfloat16, True) and tr.check is None
    # The cache has the real run's answer: the next run starts there and checks the old choice again.
    entry = json.loads(cache.read_text())["entries"][tr.choice.key]
    assert (entry["dtype"], entry["sdpa"], entry["ms"]) == ("bfloat16", True, 20.0)
    again = auto_run()
    ranked = "of a run, ms/step bf16 SDPA 1t 20.0, fp32 explicit 1t 29.0, fp32 SDPA 1t 30.0 (cached)"
    assert again.choice.way == BF16_SDPA and again.choice_note.endswith(ranked)
    assert again.choice.alts == [FP32_EXPLICIT, FP32_SDPA]


def test_the_real_run_keeps_the_choice_and_drops_a_slow_runner_up(auto_run, monkeypatch, cache):
    box: list = []
    ran = real_speeds(monkeypatch, box, {FP32_SDPA: 20.0, FP32_EXPLICIT: 20.2, BF16_SDPA: 60.0})
    tr = auto_run()
    box.append(tr)
    notes = [ev.note for ev in tr.run(steps=CHECK_STEPS) if ev.note]
    assert notes == ["auto: kept fp32 SDPA: 20.0 ms/step in steps 51-" + notes[0].split("-")[1].split(" ")[0]
                     + " of this run (expected 1.0), against fp32 explicit 20.2, bf16 SDPA 60.0"]  # fmt: skip
    # bf16, 3x slower, ran 4 steps (one to switch, 3 timed): the check cost little.
    assert ran.count(("bfloat16", True)) == 4
    assert tr.dtype == torch.float32 and json.loads(cache.read_text())["entries"][tr.choice.key]["ms"] == 20.0


def test_the_check_leaves_the_batches_and_steps_alone(auto_run, make_spec, monkeypatch):
    real_speeds(monkeypatch, [], {FP32_SDPA: 30.0, FP32_EXPLICIT: 29.0, BF16_SDPA: 20.0})
    checked = auto_run()
    forced = open_run(make_spec(dtype="float32", decay_steps=400)).trainer
    for tr in (checked, forced):
        list(tr.run(steps=CHECK_STEPS))
    assert checked.step == forced.step and torch.equal(checked.generator.get_state(), forced.generator.get_state())
    assert checked.dtype == torch.bfloat16


def test_a_check_on_a_busy_machine_is_not_cached(auto_run, monkeypatch, cache):
    real_speeds(monkeypatch, [], {FP32_SDPA: 30.0, FP32_EXPLICIT: 29.0, BF16_SDPA: 20.0})
    tr = auto_run()
    monkeypatch.setattr(cpuload.Load, "others", lambda self: 1.5)
    (note,) = [ev.note for ev in tr.run(steps=CHECK_STEPS) if ev.note]
    assert note.endswith("(not cached: the machine was busy, others used 1.50 cores)")
    assert json.loads(cache.read_text())["entries"][tr.choice.key]["dtype"] == "float32"  # the trial's, still


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_no_check_when_the_dtype_is_forced(make_spec, dtype):
    tr = open_run(make_spec(dtype=dtype, decay_steps=400)).trainer
    assert tr.check is None
    assert not [ev for ev in tr.run(steps=runcheck.START + runcheck.BLOCK) if ev.note]


def test_a_check_whose_thread_count_keeps_changing_gives_up():
    check = runcheck.DtypeCheck(autotune.Choice(*FP32_SDPA, alts=[BF16_SDPA], ms=1.0))
    ways = [check.observe(0.01, 1) for _ in range(runcheck.START + runcheck.BLOCK)]
    assert ways[-1] == BF16_SDPA  # now trying bf16 ...
    ways = [check.observe(0.01, 2) for _ in range(runcheck.GIVE_UP)]  # ... while the app holds the threads
    assert check.done and check.result is None and [w for w in ways if w] == [FP32_SDPA]  # back to the choice


def test_the_cli_says_what_the_check_found(monkeypatch, tmp_path, tiny_text, capsys):
    from tui_gpt.commands.cli import main

    monkeypatch.setattr(autotune, "time_candidates", fixed_times)
    real_speeds(monkeypatch, [], {FP32_SDPA: 30.0, FP32_EXPLICIT: 29.0, BF16_SDPA: 20.0})
    (tmp_path / "t.txt").write_text(tiny_text, encoding="utf-8")
    argv = ["train", str(tmp_path / "t.txt"), "--steps", str(CHECK_STEPS), "--n-layer", "1", "--n-head", "2",
            "--n-embd", "16", "--block-size", "16", "--batch-size", "4", "--eval-interval", "0", "--threads", "1",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 0
    assert "auto: switched to bf16 SDPA: 20.0 ms/step against fp32 SDPA 30.0 ms/step" in capsys.readouterr().err


@pytest.mark.skipif(cores() < 2, reason="one core: no thread counts to choose from")
def test_the_check_switches_the_thread_count_where_the_trial_chose_it(make_spec, monkeypatch):
    monkeypatch.setattr(autotune, "time_candidates", fixed_times)
    for name, value in [("START", 2), ("BLOCK", 2), ("ROUNDS", 2)]:  # steps on two threads are slow on a busy machine
        monkeypatch.setattr(runcheck, name, value)
    one = ("float32", True, 1)
    real_speeds(monkeypatch, [], {("float32", True, cores()): 30.0, ("float32", False, cores()): 30.0,
                                  ("bfloat16", True, cores()): 30.0, one: 10.0})  # fmt: skip
    try:
        tr = open_run(make_spec(dtype="auto", threads=-1, decay_steps=400)).trainer
        assert tr.choice.threads == cores() and one in tr.choice.alts
        (note,) = [ev.note for ev in tr.run(steps=2 + 4 * 2 * 2) if ev.note]
        assert note.startswith("auto: switched to fp32 SDPA 1t: 10.0 ms/step") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)


def test_the_step_after_an_evaluation_is_not_timed():
    check = runcheck.DtypeCheck(autotune.Choice(*FP32_SDPA, alts=[BF16_SDPA], ms=1.0))
    for _ in range(runcheck.START + 2):  # the block's first step pays for the switch: the second is timed
        check.observe(0.01, 1)
    check.evaluated()
    check.observe(5.0, 1)
    check.observe(0.02, 1)
    assert check.times[FP32_SDPA] == [0.01, 0.02]


# ---- a load that comes (or goes) after the check: the run checks again --------------------------


def looks(monkeypatch, values: list[float]) -> None:
    """Make cpuload's readings come from `values`, one per look (the last one repeats)."""
    it = iter(values)
    last = [values[-1]]
    monkeypatch.setattr(cpuload.Load, "others", lambda self: last.__setitem__(0, next(it, last[0])) or last[0])


def test_the_load_watch_checks_again_once_the_load_has_changed_side_and_stayed(monkeypatch):
    looks(monkeypatch, [1.5, 0.0, 1.5, 1.5, 0.1, 0.1])  # a burst (one look) is not load; two looks in a row are
    watch = runcheck.LoadWatch(busy=False)
    fired = [watch.steps for _ in range(6 * runcheck.WATCH_EVERY) if watch.observe()]
    assert fired == [4 * runcheck.WATCH_EVERY, 6 * runcheck.WATCH_EVERY]  # turned busy at look 4, quiet at look 6
    assert not watch.busy and watch.others == 0.1


def test_where_the_load_is_unknown_the_watch_never_fires(monkeypatch):
    monkeypatch.setattr(cpuload.Load, "others", lambda self: None)
    watch = runcheck.LoadWatch(busy=False)
    assert not any(watch.observe() for _ in range(10 * runcheck.WATCH_EVERY))


def test_a_check_again_tries_the_other_dtype_and_thread_count_each_and_both():
    ways = runcheck.ways_again(("bfloat16", False, 2), ["float32", "bfloat16"], [2, 1])
    assert ways == [("bfloat16", False, 2), ("float32", False, 2), ("bfloat16", False, 1), ("float32", False, 1)]
    assert runcheck.ways_again(("float32", True, 1), ["float32"], [1]) == [("float32", True, 1)]


def test_a_check_again_starts_at_once_and_says_so():
    check = runcheck.DtypeCheck(autotune.Choice(*FP32_SDPA, alts=[BF16_SDPA], ms=1.0), start=0)
    ways = [check.observe(0.01, 1) for _ in range(runcheck.BLOCK)]
    assert ways[-1] == BF16_SDPA and not any(ways[:-1])


def test_the_run_checks_again_when_the_machine_turns_busy_and_switches(auto_run, monkeypatch, cache):
    box: list = []
    speeds = {FP32_SDPA: 20.0, FP32_EXPLICIT: 20.2, BF16_SDPA: 60.0}  # quiet: the trial's choice is right
    ran = real_speeds(monkeypatch, box, speeds)
    tr = auto_run()
    box.append(tr)
    notes = [ev.note for ev in tr.run(steps=CHECK_STEPS) if ev.note]
    assert notes[0].startswith("auto: kept fp32 SDPA") and tr.watch is not None and not tr.watch.busy
    # Another job starts: others use 1.5 cores, and bf16 now runs faster than fp32 here.
    monkeypatch.setattr(cpuload.Load, "others", lambda self: 1.5)
    speeds.update({FP32_SDPA: 50.0, FP32_EXPLICIT: 50.0, BF16_SDPA: 25.0})
    before = len(ran)  # `ran` grows only while a check runs
    watch_steps = runcheck.WATCH_SAME * runcheck.WATCH_EVERY
    again = [ev for ev in tr.run(steps=watch_steps + 2 * runcheck.ROUNDS * runcheck.BLOCK) if ev.note]
    assert len(again) == 1, [ev.note for ev in again]
    note = again[0].note
    assert note.startswith(
        "auto: the machine turned busy (others used 1.50 cores): switched to bf16 SDPA: 25.0 ms/step"
    )
    assert note.endswith("(not cached: the machine was busy, others used 1.50 cores)")
    # The check again ran the current way first, then the others, a block each.
    block = runcheck.BLOCK
    assert ran[before : before + block] == [("float32", True)] * block and ran[before + block] == ("bfloat16", True)
    assert tr.dtype == torch.bfloat16 and tr.check is None and tr.watch is not None and tr.watch.busy
