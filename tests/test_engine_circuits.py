"""The circuits experiment (#28): the generated task's property, and `tui-gpt circuits` end to end on a few steps."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from tui_gpt.commands.cli import main
from tui_gpt.commands.phase_watch import icl_line, phase_lines
from tui_gpt.engine.corpus import load_corpus
from tui_gpt.engine.synthetic import LINE, LONGEST, SHORTEST, induction_text
from tui_gpt.probes.phase import find_phase_change
from tui_gpt.settings import INDUCTION_TASK, circuits_spec, is_builtin


def period(line: str) -> int:
    """The length of the string the line repeats: the shortest p at which it repeats."""
    return next(p for p in range(1, len(line) + 1) if all(line[k] == line[k - p] for k in range(p, len(line))))


def test_within_a_line_the_next_letter_is_the_one_a_repeat_earlier_and_across_lines_it_varies():
    lines = induction_text(lines=400).splitlines()
    assert len(lines) == 400 and all(len(line) == LINE for line in lines)
    lengths = [period(line) for line in lines]
    # Within a line, after its first P letters, each letter is the one P places back: copying predicts it.
    assert all(SHORTEST <= p <= LONGEST for p in lengths)
    # P varies from line to line: no fixed distance back is right (the position shortcut of #28).
    assert set(lengths) == set(range(SHORTEST, LONGEST + 1))
    # Across lines, what follows a letter varies: the letter alone, or the text's statistics, do not give it.
    after: dict[str, Counter[str]] = {}
    for line in lines:
        for a, b in pairwise(line[: period(line) + 1]):  # one repeat: each string counted once
            after.setdefault(a, Counter())[b] += 1
    assert all(len(seen) >= 10 and max(seen.values()) < 0.5 * sum(seen.values()) for seen in after.values())


def test_the_text_is_the_same_every_time_and_a_builtin():
    assert induction_text(lines=50) == induction_text(lines=50)
    assert is_builtin(INDUCTION_TASK)
    corpus = load_corpus([INDUCTION_TASK])
    assert corpus.name.startswith(INDUCTION_TASK) and corpus.texts == [induction_text()]


def test_circuits_trains_and_prints_a_reading_every_interval(capsys):
    assert main(["circuits", "--steps", "20", "--head-interval", "10", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    readings = [line.split() for line in out.splitlines() if line.startswith("step")]
    assert [r[1] for r in readings] == ["0/20", "10/20", "20/20"], out
    assert all("induction" in r and "previous-token" in r and "icl" in r for r in readings)
    spec = circuits_spec(0)
    assert f"a {spec.n_layer}-layer model ({spec.n_head} heads, {spec.n_embd} wide" in out
    assert "no phase change in 20 steps" in out, "20 steps form no head"
    assert "loss on the repeated half minus the first (icl)" in out


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--head-interval", "0"], "--head-interval must be positive"),
        (["--steps", "0"], "--steps must be positive"),
        (["--time", "-1"], "--time must be positive"),
        (["--seed", "-1"], "--seed must be an integer in 0.."),
    ],
)
def test_bad_options_are_one_line(capsys, argv, says):
    with pytest.raises(SystemExit) as exit_:
        main(["circuits", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_a_folder_it_must_not_write_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["circuits", "--steps", "5", "--threads", "1", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "holds files that are not a tui-gpt checkpoint" in captured.err and "step" not in captured.out
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_end_of_a_run_says_the_phase_change_in_numbers_and_words():
    flat = [[0.05, 0.05], [0.05, 0.05]]
    formed = [[0.05, 0.05], [0.05, 0.70]]
    steps = [0, 100, 200, 300]
    scores = [
        {"induction": flat, "icl": -0.1},
        {"induction": flat, "icl": -0.1},
        {"induction": formed, "icl": -2.0},
        {"induction": formed, "icl": -2.1},
    ]
    change = find_phase_change(steps, scores)
    lines = phase_lines(change, {200: 42.0}, 300, 0.7)
    assert lines[0] == "phase change at step 200 (42 s into training), between steps 100 and 200"
    assert lines[1] == "best induction head layer 2 head 2: 0.05 -> 0.70; icl -0.10 -> -2.00 nats"
    assert lines[2].startswith("layer 2 head 2 now copies")
    assert phase_lines(None, {}, 300, 0.1)[0].startswith("no phase change in 300 steps")
    assert icl_line(steps, scores) == (
        "loss on the repeated half minus the first (icl): -0.10 -> -2.10 nats at its lowest, halfway at step 200"
    )
