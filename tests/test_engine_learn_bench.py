"""`bench --seed-sentence` and `bench --to-loss`: a run that learns reaches them, and the report says when."""

from __future__ import annotations

from test_engine_cli import TINY, tui_gpt

from tui_gpt.commands.cli import main
from tui_gpt.commands.learn_bench import ranks_text, seed_goal
from tui_gpt.settings import SEED_SENTENCE


def test_goal_needs_every_word_in_the_top_five():
    assert seed_goal([("brown", 1), ("dog", 5)])
    assert not seed_goal([("brown", 1), ("dog", 6)])
    assert not seed_goal([("brown", 1), ("dog", None)])
    assert ranks_text([("brown", 2), ("dog", None)], 50) == "brown 2 dog >50"


def test_seed_sentence_is_learned_from_a_text_that_says_it(tmp_path):
    lines = [SEED_SENTENCE + ".", "The hen sat by the river."] * 40
    (tmp_path / "seed.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = tui_gpt(
        "bench", "--seed-sentence", "--text", "seed.txt", *TINY, "--block-size", "32", "--lr", "1e-2",
        "--time", "90", "--every", "1", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("bench: seed_sentence_met=1/1 median_s=")
    rows = [line for line in r.stderr.splitlines() if line.startswith("seed 1337 ") and " step " in line]
    words = ("brown", "fox", "jumps", "over", "the", "lazy", "dog")

    def ranks(row: str) -> list[int]:
        cells = row.split("  ")[-1].split()
        assert tuple(cells[::2]) == words
        return [int(r.lstrip(">")) + r.startswith(">") for r in cells[1::2]]

    assert " step     0 " in rows[0] and max(ranks(rows[0])) > 5  # an untrained model has no idea
    assert max(ranks(rows[-1])) <= 5 and all(max(ranks(row)) > 5 for row in rows[:-1])  # it stops at the goal
    assert "seed 1337: goal met at " in r.stderr and "goal met in 1 of 1 seeds within 90 s" in r.stderr


def test_to_loss_reports_the_wall_time_of_the_whole_split(tmp_path, tiny_text, capsys):
    (tmp_path / "tiny.txt").write_text(tiny_text, encoding="utf-8")
    r = tui_gpt(
        "bench", "--to-loss", "2.5", "--text", "tiny.txt", *TINY, "--lr", "1e-2",
        "--steps", "200", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("bench: to_loss=2.5 reached=1/1 median_s=")
    assert "whole split " in r.stderr and "seed 1337: loss 2.5 at " in r.stderr
    # Not reached: in this process, where torch is loaded already.
    assert main(["bench", "--to-loss", "0.01", "--text", str(tmp_path / "tiny.txt"), *TINY, "--steps", "20"]) == 0
    out, err = capsys.readouterr()
    assert "reached=0/1 median_s=nan" in out and "not reached in 20 steps" in err
