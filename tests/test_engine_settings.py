"""One rule per setting: what the command line accepts, a saved checkpoint loads back, and no more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_gpt.commands import cli
from tui_gpt.engine.checkpoint import load_trainer, read_config_json, save_checkpoint
from tui_gpt.errors import TuiGptError
from tui_gpt.settings import OPTIONS, RULES, STEPS, cores

# The extremes the rules allow, and a value just past each: written out here, not derived from RULES.
EXTREMES = {
    "--batch-size": ([1, 65536], [0, 65537]),
    "--grad-accum": ([1, 65536], [0, 65537]),
    "--lr": ([1e-12, 10.0], [0.0, 10.5, float("nan"), float("inf")]),
    "--warmup": ([0, 1 << 53], [-1]),
    "--eval-interval": ([0, 1 << 53], [-1]),
    "--eval-iters": ([1, 65536], [0, 70000]),
    "--head-interval": ([0, 1 << 53], [-1]),
    "--seed": ([0, (1 << 63) - 1], [-1, 1 << 63]),
    "--steps": ([1, 1 << 53], [-1]),
    "--dropout": ([0.0, 0.999], [1.0, -0.1, float("nan")]),
    "--n-layer": ([1, 512], [0, 513]),
    "--n-head": ([1, 1024], [0, 1025]),
    "--n-embd": ([1024, 1 << 15], [0, (1 << 15) + 1024]),
    "--block-size": ([1, 1 << 14], [0, (1 << 14) + 1]),
    "--vocab-size": ([1, 1 << 20], [0, (1 << 20) + 1]),
}


def parses(*argv: str) -> bool:
    parser = cli.parser_train()
    try:
        cli._check(parser, parser.parse_args(list(argv)), "steps")
    except SystemExit:
        return False
    return True


def test_every_option_with_a_value_has_a_rule_and_a_case_here():
    ruled = {opt.flag for opt in (*OPTIONS, STEPS) if opt.field in RULES and opt.kind in (int, float)}
    assert ruled == set(EXTREMES)


@pytest.mark.parametrize("flag", sorted(EXTREMES))
def test_the_parser_accepts_what_the_loader_accepts_and_no_more(flag, fables_run, tmp_path):
    saved = save_checkpoint(tmp_path / "ck", fables_run.trainer, fables_run.tokenizer, fables_run.corpus_info())
    base = json.loads((saved / "config.json").read_text())
    opt = next(o for o in (*OPTIONS, STEPS) if o.flag == flag)
    good, bad = EXTREMES[flag]
    # n_embd must divide by n_head: pair each with the other's most accommodating value
    partner = {"--n-head": ("--n-embd", "n_embd", 1 << 15), "--n-embd": ("--n-head", "n_head", 1)}.get(flag)
    for value, expected in [*((v, True) for v in good), *((v, False) for v in bad)]:
        extra = [partner[0], str(partner[2])] if partner else []
        assert parses(flag, str(value), *extra) is expected, (flag, value)
        cfg = json.loads(json.dumps(base))
        section = cfg["train"] if opt.target.startswith("train.") else cfg["model"]
        if opt.field not in section:
            continue  # a run setting the checkpoint keeps elsewhere (the tokenizer's vocab size)
        section[opt.field] = value
        if partner:
            cfg["model"][partner[1]] = partner[2]
        (saved / "config.json").write_text(json.dumps(cfg))
        if expected:
            read_config_json(saved)
        else:
            with pytest.raises(TuiGptError):
                read_config_json(saved)


def test_a_save_with_every_extreme_training_value_loads_back(fables_run, tmp_path):
    trainer = fables_run.trainer
    extremes = {"batch_size": 65536, "grad_accum": 65536, "lr": 10.0, "warmup_steps": 1 << 53, "eval_interval": 0,
                "eval_iters": 65536, "seed": (1 << 63) - 1, "decay_steps": 1 << 53, "min_lr": 10.0,
                "weight_decay": 1e9, "grad_clip": 0.0, "beta1": 0.0, "beta2": 0.999}  # fmt: skip
    for name, value in extremes.items():
        setattr(trainer.config, name, value)
    out = save_checkpoint(tmp_path / "ck", trainer, fables_run.tokenizer, fables_run.corpus_info())
    assert read_config_json(out)["train"]["seed"] == (1 << 63) - 1
    loaded = load_trainer(out, fables_run.data, device="cpu")
    assert {k: getattr(loaded.config, k) for k in extremes} == extremes


def test_a_save_never_writes_what_a_load_refuses(fables_run, tmp_path, one_line_error):
    out = save_checkpoint(tmp_path / "ck", fables_run.trainer, fables_run.tokenizer, fables_run.corpus_info())
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    fables_run.trainer.config.lr = 11.0
    with pytest.raises(TuiGptError) as info:
        fables_run.save(out)
    one_line_error(info.value, "train.lr")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    "bad",
    [["--lr", "11"], ["--seed", "-1"], ["--eval-iters", "70000"], ["--batch-size", "70000"], ["--lr", "nan"]],
    ids=lambda a: " ".join(a),
)
def test_train_resume_refuses_a_value_before_touching_the_checkpoint(bad, fables_run, tmp_path, capsys):
    good = fables_run.save(tmp_path / "good")
    before = {p.name: p.read_bytes() for p in Path(good).iterdir() if p.is_file()}
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--resume", str(good), "--steps", "60", *bad])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{bad[0]} must be" in err, err
    assert {p.name: p.read_bytes() for p in Path(good).iterdir() if p.is_file()} == before


# ---- --threads: bounded by the machine -------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "bench"])
@pytest.mark.parametrize("threads", ["100000", str(cores() + 1), "-1"])
def test_threads_beyond_the_cores_are_refused_before_any_work(command, threads, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:  # 100,000 started ~17,800 threads, then segfaulted
        cli.main([command, "--threads", threads])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    want = f"error: --threads must be an integer in 0..{cores()} (this machine's cores; 0: all), got {threads}"
    assert err.strip().splitlines()[-1].endswith(want)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", [cli.parser_train, cli.parser_bench])
def test_threads_up_to_the_cores_are_accepted(make):
    for threads in ("0", "1", str(cores())):
        parser = make()
        cli._check(parser, parser.parse_args(["--threads", threads]))


def test_a_trainer_never_runs_more_threads_than_cores(fables_run):
    import torch

    before = torch.get_num_threads()
    try:
        fables_run.trainer.set_threads(100_000)  # the library's own backstop, under the parser's refusal
        assert torch.get_num_threads() == cores()
    finally:
        torch.set_num_threads(before)


# ---- bad numbers: one line each, before any work ----------------------------------------------

BAD_NUMBERS = {
    "train --seed 1e23": (["train", "--seed", "1e23"], "argument --seed: invalid int value: '1e23'"),
    "app --seed 1e23": (["--seed", "1e23"], "argument --seed: invalid int value: '1e23'"),
    "generate --seed 10**23": (
        ["generate", "CK", "x", "--seed", str(10**23)],
        "--seed must be an integer in 0..9223372036854775807, got '1000000000000000000…'",
    ),
    "generate --temperature nan": (
        ["generate", "CK", "x", "--temperature", "nan"],
        "--temperature must be a number in [0, 100], got 'nan'",
    ),
    "generate --temperature 1e9": (
        ["generate", "CK", "x", "--temperature", "1e9"],
        "--temperature must be a number in [0, 100], got '1000000000.0'",
    ),
    "complete --temperature -1": (
        ["complete", "CK", "x", "--temperature", "-1"],
        "--temperature must be a number in [0, 100], got '-1.0'",
    ),
    "complete --words --temperature nan": (
        ["complete", "CK", "x", "--words", "--temperature", "nan"],
        "--temperature must be a number in [0, 100], got 'nan'",
    ),
    "generate --top-p -1": (["generate", "CK", "x", "--top-p", "-1"], "--top-p must be a number in (0, 1], got '-1.0'"),
    "generate --top-p nan": (
        ["generate", "CK", "x", "--top-p", "nan"],
        "--top-p must be a number in (0, 1], got 'nan'",
    ),
}


@pytest.mark.parametrize("case", BAD_NUMBERS)
def test_a_bad_number_is_one_usage_line_before_any_work(case, tmp_path, capsys, monkeypatch):
    argv, says = BAD_NUMBERS[case]
    monkeypatch.chdir(tmp_path)  # CK does not exist: had the command got as far as loading it, it would say so
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and out == ""
    assert err.strip().splitlines()[-1].endswith(f"error: {says}")
    assert list(tmp_path.iterdir()) == []


def test_the_temperatures_and_top_p_at_their_bounds_are_accepted():
    for make, argv in [
        (cli.parser_complete, ["CK", "x", "--temperature", "0"]),
        (cli.parser_complete, ["CK", "x", "--temperature", "100"]),
        (cli.parser_generate, ["CK", "x", "--temperature", "0", "--top-p", "1"]),
        (cli.parser_generate, ["CK", "x", "--temperature", "1e-300", "--top-p", "1e-9"]),
    ]:
        parser = make()
        cli._check(parser, parser.parse_args(argv))


def test_sampling_at_a_tiny_temperature_is_greedy_not_nan(trained):
    from tui_gpt.probes.predict import sample

    model, tok, _ = trained
    ids = tok.encode("The fox")
    assert list(sample(model, ids, 8, temperature=1e-300, seed=0)) == list(sample(model, ids, 8, temperature=0))
