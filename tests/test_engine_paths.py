"""Every path a person gives the command line: arguments and environment variables, one checked path each.

Issue #25, row 15: `~nosuchuser/...` (RuntimeError from expanduser) or a 5,000-character path (OSError
ENAMETOOLONG) as TEXT, --out, CKPT, --resume, export's OUT, --model, --log-dir, TUI_GPT_DATA or
TUI_GPT_CACHE printed a traceback. Each is now one line from errors.checked_path, before any work starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tui_gpt.commands.cli import main
from tui_gpt.errors import TuiGptError, checked_path, env_path, env_path_or, path_arg, path_problem

NO_USER = "~nosuchuser/x"
LONG = "/tmp/" + "x" * 5000
BAD = {"no such user": NO_USER, "too long": LONG, "NUL": "a\0b", "long name": "/tmp/" + "n" * 256}


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`tui-gpt argv` in this process: its exit status and what it printed on stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage error
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def commands(bad: str, tmp: Path) -> list[list[str]]:
    """Each command line with `bad` in one path's place."""
    ok = str(tmp / "out")
    return [
        ["train", bad, "--steps", "1", "--out", ok],
        ["train", "--out", bad, "--steps", "1"],
        ["train", "--resume", bad, "--out", ok],
        ["train", "--model", bad, "--out", ok],
        ["train", "--log", "tensorboard", "--log-dir", bad, "--out", ok],
        ["complete", bad, "The"],
        ["complete", "--model", bad, "The"],
        ["generate", bad],
        ["heads", bad],
        ["export", bad, ok],
        ["export", ok, bad],
        ["bench", "--text", bad],
        ["sweep", bad, "--out", ok],
        ["sweep", "--out", bad],
        ["sweep", "--model", f"gpt2,{bad}", "--out", ok],
        ["sweep", "--log-dir", bad, "--out", ok],
        [bad],  # the app
        ["--out", bad],
        ["--resume", bad],
        ["serve", "--out", bad],
    ]


@pytest.mark.parametrize("kind", list(BAD))
def test_every_path_argument_is_one_line(kind: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    bad = BAD[kind]
    for argv in commands(bad, tmp_path):
        code, err = run_main(argv, capsys)
        shown = " ".join(a[:12] for a in argv)
        assert code == 2, (shown, code, err[-300:])
        assert "Traceback" not in err and err.count("error:") == 1, (shown, err[-300:])  # argparse's usage, one error
        last = err.strip().splitlines()[-1]
        assert last.startswith("tui-gpt") and "error:" in last and len(last) < 300, (shown, last)
        assert not (tmp_path / "out").exists(), f"{shown}: work started"


@pytest.mark.parametrize("name", ["TUI_GPT_DATA", "TUI_GPT_CACHE", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME"])
@pytest.mark.parametrize("kind", ["no such user", "too long"])
def test_every_path_variable_is_one_line(name: str, kind: str, monkeypatch) -> None:
    from tui_gpt.engine import autotune, hf, tokencache
    from tui_gpt.runs.registry import registry_path

    for other in ("TUI_GPT_DATA", "TUI_GPT_CACHE", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, BAD[kind])
    readers = {
        "TUI_GPT_DATA": [registry_path],
        "XDG_DATA_HOME": [registry_path],
        "TUI_GPT_CACHE": [autotune.cache_dir, tokencache.cache_dir],
        "XDG_CACHE_HOME": [autotune.cache_dir, tokencache.cache_dir, hf.hub_cache],
        "HF_HOME": [hf.hub_cache],
    }[name]
    for read in readers:
        with pytest.raises(TuiGptError, match=rf"^{name}=.*: .*({kind.split()[-1]})"):
            read()


def test_a_bad_registry_variable_is_one_line_from_runs(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TUI_GPT_DATA", NO_USER)
    code, err = run_main(["runs"], capsys)
    assert code == 2 and err.strip() == (
        "tui-gpt: error: TUI_GPT_DATA=~nosuchuser/x: no such user, or no home folder: ~nosuchuser"
    )


@pytest.mark.parametrize("name", ["TUI_GPT_CACHE", "XDG_CACHE_HOME", "HF_HOME"])
def test_a_bad_variable_is_refused_before_any_work(name, tmp_path, capsys, monkeypatch) -> None:
    """Checked when the command starts: a train refused for TUI_GPT_CACHE had already locked its --out."""
    monkeypatch.setenv("TUI_GPT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv(name, LONG)
    code, err = run_main(["train", "--steps", "1", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.startswith(f"tui-gpt: error: {name}=/tmp/xxx") and "too long" in err
    assert not (tmp_path / "out").exists()


def test_good_paths_pass_unchanged() -> None:
    assert checked_path("~/x") == Path.home() / "x"
    assert checked_path("fables") == Path("fables")
    assert path_arg("~/x") == "~/x", "argparse keeps what was typed"
    assert path_problem("/tmp/" + "n" * 255) is None and path_problem("/" + "a/" * 2000) is None


def test_the_checked_path_says_why_in_one_line() -> None:
    assert path_problem(NO_USER) == "no such user, or no home folder: ~nosuchuser"
    assert path_problem("") == "an empty path"
    with pytest.raises(TuiGptError) as err:
        checked_path("\x1b[2J" + "q" * 5000, "--out")
    line = str(err.value)
    assert line.startswith("--out \\x1b[2Jqqq") and "\x1b" not in line and len(line) < 150
    with pytest.raises(argparse.ArgumentTypeError, match="NUL"):
        path_arg("a\0b")


def test_variables_unset_or_empty_fall_back(monkeypatch) -> None:
    monkeypatch.setenv("TUI_GPT_DATA", "")
    assert env_path("TUI_GPT_DATA") is None
    assert env_path_or("TUI_GPT_DATA", "~/.local/share") == Path.home() / ".local" / "share"
    monkeypatch.delenv("HOME")
    monkeypatch.setattr("pwd.getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    with pytest.raises(TuiGptError, match=r"TUI_GPT_DATA is unset, and ~/\.local/share: no such user, or no home"):
        env_path_or("TUI_GPT_DATA", "~/.local/share")


@pytest.mark.parametrize("bad", [NO_USER, LONG, "a\0b"])
def test_the_engine_checks_the_paths_it_is_given(bad: str, tmp_path) -> None:
    """Below the command line too (a resumed run's stored sources, the app's trainer): one line, not a traceback."""
    from tui_gpt.engine.checkpoint import load_model
    from tui_gpt.engine.corpus import load_corpus
    from tui_gpt.engine.hf import export, find_model

    for call in (
        lambda: load_corpus([bad]),
        lambda: load_model(bad),
        lambda: find_model(bad),
        lambda: export(bad, tmp_path / "x"),
        lambda: export(tmp_path, bad),
    ):
        with pytest.raises(TuiGptError):
            call()
