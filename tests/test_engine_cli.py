"""The `tui-gpt` command end to end, in a subprocess: errors as one line, and a tiny train/probe/resume."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from tui_gpt.engine.checkpoint import FILES

TIMEOUT = 120
# float32 on one thread: no --dtype auto trial (tests/test_engine_autotune.py has those), 2 s a model shape.
TINY = [
    "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--batch-size", "4",
    "--eval-interval", "10", "--eval-iters", "2", "--dtype", "float32", "--threads", "1",
]  # fmt: skip


def tui_gpt(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "tui_gpt", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
    )


# ---- errors ---------------------------------------------------------------------------------

ERROR_COMMANDS = {
    "train": ("train", "/nonexistent"),
    "complete": ("complete", "/nonexistent", "x"),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("cli-errors")
    return {name: tui_gpt(*args, cwd=cwd) for name, args in ERROR_COMMANDS.items()}


@pytest.mark.parametrize("name", ERROR_COMMANDS)
def test_error_exits_2_with_a_message_and_no_traceback(error_runs, name):
    r = error_runs[name]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("tui-gpt: error:")]
    assert len(errors) == 1, r.stderr
    assert "/nonexistent" in errors[0]


@pytest.mark.parametrize("name", ["train", "complete"])
def test_error_is_exactly_one_stderr_line(error_runs, name):
    r = error_runs[name]
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("tui-gpt: error:")
    assert r.stdout == ""


def test_bad_option_is_a_usage_error(tmp_path):
    r = tui_gpt("train", "--n-embd", "30", "--n-head", "4", cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "divisible" in r.stderr


# ---- a tiny run, end to end -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, tiny_text):
    cwd = tmp_path_factory.mktemp("cli-run")
    (cwd / "tiny.txt").write_text(tiny_text, encoding="utf-8")
    r = tui_gpt("train", "tiny.txt", "--steps", "30", *TINY, "--out", "DIR", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return cwd, r


def test_train_writes_a_checkpoint(trained_dir):
    cwd, r = trained_dir
    out = cwd / "DIR"
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == str(out.resolve())
    for name in ["model.safetensors", "config.json", "tokenizer.json", "optimizer.safetensors", "trainer.json"]:
        assert (out / name).is_file(), name
    assert (out / "history.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, ".lock"])
    assert json.loads((out / "trainer.json").read_text())["step"] == 30
    history = json.loads((out / "history.json").read_text())
    assert history["steps"] == list(range(1, 31))
    assert history["eval_steps"] == [0, 10, 20, 30]
    assert history["val_bytes_per_token"] == 1.0
    evals = [line for line in r.stderr.splitlines() if line.lstrip().startswith("step ") and " bpb" in line]
    assert len(evals) == 4, r.stderr  # "step     10: train 2.9 val 2.9 · 4.2 bpb ..."
    assert sorted(p.name for p in cwd.iterdir()) == ["DIR", "tiny.txt"]  # no temporary dirs left


def test_complete_prints_top_k_table(trained_dir):
    cwd, _ = trained_dir
    r = tui_gpt("complete", "DIR", "The", "--top-k", "5", cwd=cwd)
    assert r.returncode == 0, r.stderr
    rows = [line.split("│")[1:-1] for line in r.stdout.splitlines() if line.startswith("│")]
    ranks = [cells[0].strip() for cells in rows if cells[0].strip().isdigit()]
    assert ranks == ["1", "2", "3", "4", "5"], r.stdout
    probs = [float(cells[3]) for cells in rows if cells[0].strip().isdigit()]
    assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)


def test_complete_lens_prints_a_layer_by_top_k_table_in_tokens_or_words(trained_dir, capsys):
    from tui_gpt.commands.cli import main

    cwd, _ = trained_dir
    r = tui_gpt("complete", "DIR", "The", "--lens", "--top-k", "3", cwd=cwd)
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in r.stdout.splitlines() if line.startswith("│")]
    assert [row[0] for row in rows] == ["embed", "layer 1"], r.stdout  # TINY has one layer
    assert all(len(row) == 5 for row in rows)  # layer, top 1-3, p final
    assert "logit lens" in r.stdout and "p final" in r.stdout

    # --words: each layer's next words; the last layer's are the model's own (complete --words, the Next word pane)
    from tui_gpt.engine.checkpoint import load_model
    from tui_gpt.probes.nextword import next_words

    capsys.readouterr()
    argv = ["complete", str(cwd / "DIR"), "The ", "--lens", "--words", "--top-k", "3"]
    assert main(argv) == 0  # in this process: torch is loaded already
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    assert [row[0].rstrip(" *") for row in rows] == ["embed", "layer 1"], out
    assert all(len(row) == 6 for row in rows)  # layer, top 1-3, other, p final
    assert "logit lens in words" in out and "p final" in out
    model, tok, _ = load_model(cwd / "DIR")
    own = next_words(model, tok, "The ", k=3)
    assert rows[-1][1:4] == [f"{w.text.replace(' ', '·')} {w.prob:.3f}" for w in own.words], out
    assert rows[-1][4] == f"{own.other:.3f}" and rows[-1][5] == f"{own.words[0].prob:.3f}"


def test_heads_prints_one_row_per_head(trained_dir):
    cwd, _ = trained_dir
    r = tui_gpt("heads", "DIR", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "previous-token score" in r.stdout and "induction score" in r.stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in r.stdout.splitlines() if line.startswith("│")]
    assert [(row[0], row[1]) for row in rows] == [("1", "1"), ("1", "2")], r.stdout  # TINY: 1 layer, 2 heads
    assert all(0 <= float(x) <= 1 for row in rows for x in row[2:])
    assert "in-context score" in r.stdout


def test_generate_streams_a_sample(trained_dir):
    cwd, _ = trained_dir
    r = tui_gpt("generate", "DIR", "The", "-n", "20", "--seed", "1", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("The")
    assert len(r.stdout) > len("The\n")
    assert "Traceback" not in r.stderr


def test_train_resume_continues(trained_dir, tmp_path):
    cwd, _ = trained_dir
    ckpt = tmp_path / "copy"
    shutil.copytree(cwd / "DIR", ckpt)
    r = tui_gpt("train", "--resume", str(ckpt), "--steps", "10", "--threads", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resuming from step 30" in r.stderr
    assert json.loads((ckpt / "trainer.json").read_text())["step"] == 40
    history = json.loads((ckpt / "history.json").read_text())
    assert history["steps"] == list(range(1, 41))
    assert history["eval_steps"][-1] == 40


def test_bench_ends_with_its_summary_line(tmp_path, tiny_text):
    (tmp_path / "tiny.txt").write_text(tiny_text, encoding="utf-8")
    r = tui_gpt("bench", "--text", "tiny.txt", "--steps", "20", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    fields = dict(kv.split("=") for kv in lines[-1].removeprefix("bench: ").split())
    assert lines[-1].startswith("bench: ") and list(fields) == ["steps", "tok_per_s", "val_loss", "val_bpb", "mfu"]
    # the char tokenizer on ASCII text: one byte a token, so bits per byte is the loss over ln 2
    assert float(fields["val_bpb"]) == pytest.approx(float(fields["val_loss"]) / math.log(2), abs=1e-3)
    assert int(fields["steps"]) == 20 and float(fields["tok_per_s"]) > 0 and 0 < float(fields["mfu"]) < 1
    assert 0 < float(fields["val_loss"]) < 5
    assert "val loss over the whole split: " in r.stderr  # the report goes to stderr, the summary to stdout


def test_train_keep_best_then_complete_run_best(tmp_path, tiny_text):
    """--keep best: each new best val loss's weights go to OUT/best, and `complete OUT/best` probes them."""
    (tmp_path / "tiny.txt").write_text(tiny_text, encoding="utf-8")
    r = tui_gpt("train", "tiny.txt", "--steps", "20", *TINY, "--keep", "best", "--out", "DIR", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "DIR"
    state = json.loads((out / "trainer.json").read_text())
    best = state["best_val"]
    assert json.loads((out / "best" / "trainer.json").read_text())["step"] == best["step"] > 0
    said = " ".join(r.stderr.split())  # the console wraps at its width
    assert f"new best val {best['loss']:.4f} at step {best['step']}: saved to" in said and "Traceback" not in said
    c = tui_gpt("complete", "DIR/best", "The", "--top-k", "3", cwd=tmp_path)
    assert c.returncode == 0, c.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR", "tiny.txt"]  # no temporary dirs left
    bad = tui_gpt("train", "tiny.txt", "--keep", "worst", cwd=tmp_path)
    assert bad.returncode == 2 and "--keep" in bad.stderr and "Traceback" not in bad.stderr
