"""bench --ui --runs N (the spread of given per-run figures), bench --beside / --nanogpt (its parsing and
summary) and the OpenMP wait policy tui-gpt sets for itself. Nothing here is timed."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from tui_gpt.commands.bench_spread import Bar, spread_lines, ui_bars
from tui_gpt.commands.beside_bench import (
    SPINNING,
    Figure,
    bench_tok_s,
    check_nanogpt,
    nanogpt_tok_s,
    prepare_nanogpt,
    summary_lines,
)
from tui_gpt.commands.cli import main
from tui_gpt.errors import TuiGptError
from tui_gpt.settings import FRAMES_PER_S, OPENMP_WAIT, frames_per_s, others_running, wait_passively


@pytest.fixture(autouse=True)
def _own_openmp_env(monkeypatch):
    """main() sets OMP_WAIT_POLICY for its process; put the test session's back after each test."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)


# ---- bench --ui --runs: the spread ------------------------------------------------------------


def run_figures(topk: float, words: float, typing: float) -> dict[str, float]:
    return {
        "topk_p95_ms": topk,
        "topk_max_ms": topk + 20,
        "words_p95_ms": words,
        "big_topk_p95_ms": topk + 5,
        "big_words_p95_ms": words - 5,
        "idle_ratio": 0.9,
        "typing_ratio": typing,
        "first_paint_s": 0.3,
    }


def test_spread_prints_every_run_min_median_max_and_how_many_met_each_bar():
    runs = [run_figures(25.0, 45.6, 0.61), run_figures(31.0, 75.5, 0.55), run_figures(20.0, 38.6, 0.40)]
    lines = spread_lines(runs, ui_bars(large=False, paint=True))
    text = "\n".join(lines)
    assert lines[0].startswith("spread over 3 back-to-back runs")
    words = next(line for line in lines if line.startswith("  key -> next words p95"))
    # every run's figure in order, then the spread, then the count against the bar of 50 ms
    assert "45.6 ms, 75.5 ms, 38.6 ms" in words
    assert "min 38.6 ms, median 45.6 ms, max 75.5 ms" in words
    assert words.endswith("bar <= 50.0 ms: met in 2 of 3")
    typing = next(line for line in lines if line.startswith("  training while typing"))
    assert "61%, 55%, 40%" in typing and typing.endswith("bar >= 50%: met in 2 of 3")
    big = next(line for line in lines if line.startswith("  6 x 384: key -> next tokens p95"))
    assert big.endswith("met in 2 of 3")  # 30.0, 36.0 and 25.0 against 33
    # run 2 misses words, run 3 misses typing: no run met every bar
    assert lines[-1] == "  every bar met in 1 of 3 runs"
    assert "best" not in text.replace("none is picked", "")


def test_a_missing_figure_never_meets_its_bar_and_shows_as_a_dash():
    runs = [run_figures(20, 30, 0.6), {**run_figures(20, 30, 0.6), "words_p95_ms": math.nan}]
    words = next(line for line in spread_lines(runs, ui_bars(False, False)) if "next words p95" in line)
    assert "30.0 ms, -" in words and words.endswith("met in 1 of 2")
    assert not Bar("x", "x", 1.0).met(math.nan)


def test_large_model_bars_are_the_fine_tuning_ones():
    bars = {b.key: b for b in ui_bars(large=True, paint=False)}
    assert bars["topk_p95_ms"].limit == 150 and bars["words_p95_ms"].limit == 400
    assert "big_topk_p95_ms" not in bars and "first_paint_s" not in bars
    small = {b.key: b for b in ui_bars(large=False, paint=False)}
    assert small["big_topk_p95_ms"].limit == 33 and small["big_words_p95_ms"].limit == 50
    assert Bar("r", "r", 0.85, most=False, unit="%").met(0.85)


# ---- bench --beside / --nanogpt ---------------------------------------------------------------

NANOGPT_LOG = """number of parameters: 0.80M
step 0: train loss 4.2, val loss 4.2
iter 0: loss 4.2, time 900.00ms, mfu -100.00%
iter 1: loss 4.1, time 50.00ms, mfu -100.00%
iter 2: loss 4.0, time 30.00ms, mfu -100.00%
iter 3: loss 3.9, time 40.00ms, mfu -100.00%
step 250: train loss 2.4, val loss 2.4
iter 250: loss 2.4, time 800.00ms, mfu 50.00%
iter 251: loss 2.4, time 50.00ms, mfu 50.00%
"""


def test_nanogpt_tokens_per_second_leave_out_evaluations_and_the_first_steps():
    # iterations 2, 3 and 251: 120 ms for 3 x 768 tokens
    assert nanogpt_tok_s(NANOGPT_LOG) == pytest.approx(3 * 768 / 0.120)
    with pytest.raises(TuiGptError, match="no iteration times"):
        nanogpt_tok_s("number of parameters: 0.80M\n")


def test_bench_line_is_read():
    out = "step 250: ...\nbench: steps=300 tok_per_s=31800 val_loss=2.1 val_bpb=nan mfu=0.5\n"
    assert bench_tok_s(out) == 31800
    with pytest.raises(TuiGptError, match="no 'bench:' line"):
        bench_tok_s("Traceback")


def test_summary_gives_ratios_and_what_each_kept():
    figures = [
        Figure("tui-gpt", False, 31_800, 0.5),
        Figure("nanoGPT", False, 20_800, 0.5),
        Figure("tui-gpt", True, 24_300, 1.5),
        Figure("nanoGPT", True, 19_800, 1.5),
        Figure("tui-gpt", True, 26_300, 1.5),
        Figure("nanoGPT", True, 19_800, 1.5),
    ]
    lines = summary_lines(figures, 1)
    assert lines[0] == "quiet: tui-gpt 31,800 tok/s, nanoGPT 20,800 tok/s: 1.53x (medians)"
    assert lines[1] == "beside 1 nice-19 torch job: tui-gpt 25,300 tok/s, nanoGPT 19,800 tok/s: 1.28x (medians)"
    assert lines[2] == "tui-gpt kept 80% of its quiet speed beside the load"
    assert lines[-1] == "bench-beside: quiet_ratio=1.53 beside_ratio=1.28 tuigpt_kept=0.80 nanogpt_kept=0.95"


def test_summary_shows_tui_gpt_with_spinning_waits_beside_it():
    figures = [
        Figure("tui-gpt", False, 30_000, 0.5),
        Figure(SPINNING, False, 31_000, 0.5),
        Figure("tui-gpt", True, 27_000, 1.5),
        Figure(SPINNING, True, 15_500, 1.5),
    ]
    lines = summary_lines(figures, 2)
    assert lines[1] == "beside 2 nice-19 torch jobs: tui-gpt 27,000 tok/s; with spinning waits 15,500 tok/s (medians)"
    assert f"{SPINNING} kept 50% of its quiet speed beside the load" in lines
    assert lines[-1] == (
        "bench-beside: quiet_spinning_tok_s=31000 beside_spinning_tok_s=15500 tuigpt_kept=0.90 spinning_kept=0.50"
    )


def test_quiet_only_summary_without_nanogpt():
    lines = summary_lines([Figure("tui-gpt", False, 30_000, 0.2)], 0)
    assert lines == ["quiet: tui-gpt 30,000 tok/s (medians)", "bench-beside: "]


def test_nanogpt_checkout_is_checked_and_its_data_prepared_outside_it(tmp_path):
    with pytest.raises(TuiGptError, match=r"no train\.py there"):
        check_nanogpt(tmp_path)
    repo = tmp_path / "nanoGPT"
    (repo / "config").mkdir(parents=True)
    for name in ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py"):
        (repo / name).write_text("# stand-in\n")
    check_nanogpt(repo)
    work = tmp_path / "work"
    work.mkdir()
    prepare_nanogpt(repo, "abcab" * 20, work)
    train = (work / "data" / "shakespeare_char" / "train.bin").stat().st_size
    val = (work / "data" / "shakespeare_char" / "val.bin").stat().st_size
    assert (train, val) == (2 * 90, 2 * 10)  # uint16 per character, the last 10% for validation
    assert (work / "configurator.py").is_file()
    assert sorted(p.name for p in repo.rglob("*")) == sorted(
        ["config", "train.py", "model.py", "configurator.py", "train_shakespeare_char.py"]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--runs", "3"], "--runs goes with --ui"),
        (["bench", "--ui", "--beside", "1"], "not with --ui"),
        (["bench", "--beside", "-1"], "--beside must be 0 or more"),
        (["bench", "--nanogpt", "/nonexistent"], "no train.py there"),
    ],
)
def test_bad_bench_options_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tui-gpt: error:" in err and message in err, err


def test_runs_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--ui", "--runs", "0"])
    assert exc.value.code == 2
    assert "--runs must be positive" in capsys.readouterr().err


# ---- OpenMP's wait policy ---------------------------------------------------------------------


def test_openmp_waits_passively_on_a_busy_machine_unless_the_user_chose():
    env: dict[str, str] = {}
    assert wait_passively(env, busy=True) and env == {OPENMP_WAIT[0]: OPENMP_WAIT[1]}
    env = {}
    assert not wait_passively(env, busy=False) and env == {}  # quiet: spinning waits are faster
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        env = dict(mine)
        assert not wait_passively(env, busy=True) and env == mine


def test_a_process_spinning_beside_this_one_counts_as_running():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert others_running() >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_textual_may_paint_faster_unless_the_user_chose():
    env: dict[str, str] = {}
    frames_per_s(env)
    assert env == {FRAMES_PER_S[0]: FRAMES_PER_S[1]}
    env = {"TEXTUAL_FPS": "30"}
    frames_per_s(env)
    assert env == {"TEXTUAL_FPS": "30"}
