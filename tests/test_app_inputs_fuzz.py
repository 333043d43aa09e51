"""Every input the app asks for: dialogs validate and never raise, and an error the app did not catch saves the run.

Issue #25, rows 2 and 3: "²" as the evaluation interval (`"²".isdigit()` is True, `int("²")` raises) and
`~nosuchuser/x.txt` or a 5,000-character path for ctrl+o ended the app with a traceback, and the trainer
was killed unsaved. The parsers are fuzzed directly (hypothesis, derandomized); a handful of cases go
through the real dialogs, from the palette, with the fake trainer.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fake_trainer import FakeTrainer
from hypothesis import given, settings
from hypothesis import strategies as st
from pilot import answer, ask_error, lab_app, ready, run_command, settle, sync, wait_for
from textual.widgets import Input

import tui_gpt.app.lab.live_settings
from tui_gpt.app.lab.compare_view import parse_checkpoint
from tui_gpt.app.lab.live_settings import parse_interval, parse_lr
from tui_gpt.app.lab.pin import parse_example
from tui_gpt.app.screens.ask import AskScreen, Refused, parse_existing, parse_path, parse_text_source
from tui_gpt.link.protocol import SetEvalInterval, SetLr
from tui_gpt.probes.surprisal import parse_edges
from tui_gpt.settings import BUILTINS

LONG_PATH = "/tmp/" + "x" * 5000
# What a careless user or an attacker types: digits str.isdigit() takes but int() does not, huge and
# non-finite numbers, a user that does not exist, a path no system takes, NUL and control characters.
HOSTILE = [
    "²",
    "٣",
    "①",
    "10**400",
    "1" + "0" * 400,
    "9" * 5000,
    "1e309",
    "-1e309",
    "-5",
    "-0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1_000",
    "0x10",
    "\u00a05",
    "5\u2003",
    "~nosuchuser/x.txt",
    "~nosuchuser",
    LONG_PATH,
    "a/" * 3000,
    "x\0y",
    "\x1b[2J",
    "\ud800",
    "fables -> \x00",
]
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
texts = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Zs", "Cc"]), max_size=12),
    st.from_regex(r"\A[+-]?\d{0,500}(\.\d*)?(e[+-]?\d{1,4})?\Z"),
    st.builds(lambda user, rest: f"~{user}/{rest}", st.text(max_size=12), st.text(max_size=12)),
    st.integers(min_value=250, max_value=6000).map(lambda n: "/tmp/" + "y" * n),
)


# ---- the parsers: a value of the right kind, or a reason; never an exception -----------------------------


@FUZZ
@given(texts)
def test_the_interval_is_a_whole_number_of_ascii_digits_or_refused(text: str) -> None:
    parsed = parse_interval(text)
    if isinstance(parsed, Refused):
        assert parsed.reason and "\n" not in parsed.reason
    else:
        assert type(parsed) is int and parsed >= 0 and text.isascii() and text.isdigit() and int(text) == parsed


@FUZZ
@given(texts)
def test_the_learning_rate_is_a_finite_number_in_its_range_or_refused(text: str) -> None:
    parsed = parse_lr(text)
    if isinstance(parsed, Refused):
        assert parsed.reason and "\n" not in parsed.reason
    else:
        assert isinstance(parsed, float) and math.isfinite(parsed) and 0 < parsed <= 10 and text.isascii()


@FUZZ
@given(texts)
def test_a_path_is_checked_or_refused_with_one_line(text: str) -> None:
    for parse in (parse_path, parse_existing, parse_text_source, parse_checkpoint):
        parsed = parse(text)
        if isinstance(parsed, Refused):
            assert parsed.reason and "\n" not in parsed.reason and "\x1b" not in parsed.reason
            assert len(parsed.reason) < 200, "a 5,000-character path is cut in its message"
        else:
            assert isinstance(parsed, str) and "\0" not in parsed and not parsed.startswith("~")


@FUZZ
@given(texts, texts)
def test_a_pinned_example_is_a_prefix_and_a_target_or_refused(prefix: str, target: str) -> None:
    parsed = parse_example(f"{prefix} -> {target}")
    if not isinstance(parsed, Refused):
        assert parsed[0].strip() and parsed[1] and parsed[1] == parsed[1].strip()


@FUZZ
@given(st.lists(texts, max_size=5).map(", ".join))
def test_rank_edges_are_parsed_or_refused_with_a_value_error(text: str) -> None:
    """The surprisal page's "edit the bucket edges" dialog refuses what parse_edges raises ValueError for."""
    try:
        edges = parse_edges(text)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert all(type(e) is int and e >= 1 for e in edges) and list(edges) == sorted(set(edges))


@pytest.mark.parametrize("text", ["²", "٣", "①", "10**400", "1e309", "-5", "nan", "inf", "9" * 5000, "\u00a05"])
def test_the_interval_refuses(text: str) -> None:
    assert isinstance(parse_interval(text), Refused)


@pytest.mark.parametrize("text", ["1e309", "-1e309", "nan", "inf", "-0.1", "0", "11", "٣", "1e-3\0"])
def test_the_learning_rate_refuses(text: str) -> None:
    assert isinstance(parse_lr(text), Refused)


def test_good_answers_are_parsed_once() -> None:
    assert parse_interval("0") == 0 and parse_interval("250") == 250
    assert parse_lr("3e-4") == 3e-4
    assert parse_text_source("fables") == "fables" and "fables" in BUILTINS
    assert parse_path("~/x") == str(Path("~/x").expanduser())
    assert parse_example("The quick brown -> fox ") == ("The quick brown", "fox")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("~nosuchuser/x.txt", "~nosuchuser/x.txt: no such user, or no home folder: ~nosuchuser"),
        (LONG_PATH, "the path is too long (5,005 bytes"),
        ("/tmp/" + "z" * 300, "a name in the path is too long"),
        ("x\0y", "x\\x00y: a path cannot hold a NUL character"),
    ],
)
def test_the_reason_a_path_is_refused(text: str, says: str) -> None:
    parsed = parse_text_source(text)
    assert isinstance(parsed, Refused) and says in parsed.reason


def test_a_parser_that_raises_refuses_the_answer_instead() -> None:
    def broken(value: str) -> int:
        return int(value)

    screen = AskScreen("How many?", "", broken)
    parsed = screen.parsed("²")
    assert isinstance(parsed, Refused) and parsed.reason.startswith("cannot use this: invalid literal")
    assert screen.parsed("") == Refused("nothing entered")
    assert screen.parsed("7") == 7


# ---- the real dialogs, from the palette ---------------------------------------------------------------


@sync
async def test_the_eval_interval_dialog_stays_open_on_a_unicode_digit(tmp_path):
    """Row 2: "²" was a ValueError traceback, and the trainer died unsaved."""
    async with ready(lab_app(tmp_path)) as (app, pilot):
        client: FakeTrainer = app.client
        await run_command(pilot, "eval int", "Set evaluation interval…")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the interval question")
        for text in ("²", "①", "9" * 5000, "-5", "1e309"):
            await answer(pilot, text)
            assert isinstance(app.screen, AskScreen) and app.is_running
            assert ask_error(app), f"no reason shown for {text[:10]!r}"
        assert SetEvalInterval not in client.kinds()
        await answer(pilot, "0")  # 0 is an answer (evaluation off), not "nothing"
        assert not isinstance(app.screen, AskScreen)
        assert client.commands[-1] == SetEvalInterval(0)

        await run_command(pilot, "learn", "Set learning rate…")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the learning-rate question")
        for text in ("nan", "1e309", "٣"):
            await answer(pilot, text)
            assert isinstance(app.screen, AskScreen) and ask_error(app)
        assert SetLr not in client.kinds()


@sync
async def test_load_text_refuses_a_path_no_system_takes(tmp_path):
    """Row 3: `~nosuchuser/x.txt` (RuntimeError) and a 5,000-character path (ENAMETOOLONG) ended the app."""
    async with ready(lab_app(tmp_path)) as (app, pilot):
        client: FakeTrainer = app.client
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the load question")
        for text in ("~nosuchuser/x.txt", LONG_PATH, "/tmp/" + "z" * 300, "x\0y"):
            await answer(pilot, text)
            assert isinstance(app.screen, AskScreen) and app.is_running
            assert ask_error(app).startswith(text[:20].replace("\0", "\\x00")), ask_error(app)
        assert client.resets == []

        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the compare question")
        await answer(pilot, "~nosuchuser/ckpt")
        assert "no such user" in ask_error(app)


@sync
async def test_an_error_in_a_handler_saves_the_run_before_the_app_ends(tmp_path, monkeypatch):
    """Any exception the app's own code lets through still ends the app, but the trainer saves first."""

    def broken(every: int) -> None:
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(tui_gpt.app.lab.live_settings, "SetEvalInterval", broken)
    app = lab_app(tmp_path)
    with pytest.raises(RuntimeError, match="a bug in a handler"):
        async with ready(app) as (app, pilot):
            await run_command(pilot, "eval int", "Set evaluation interval…")
            await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the interval question")
            app.screen.query_one(Input).value = "25"
            await pilot.press("enter")
            for _ in range(50):  # until the callback has run and raised: the app is closing then
                if app._exception is not None:
                    break
                await pilot.pause()
    client: FakeTrainer = app.client
    assert client.stops == [app.state.out], "the trainer was asked to save, once"
    assert app.final_save is not None and (Path(app.state.out) / "model.safetensors").is_file()
    assert not client.alive and app.return_code == 1


def test_after_a_crash_the_command_says_what_was_saved(tmp_path, monkeypatch, capsys):
    """The line after Textual's traceback: where the run was saved, and how to go on."""
    import io
    import sys

    import tui_gpt.app.gpt_app
    import tui_gpt.link.client
    from tui_gpt.commands.cli import parser_app
    from tui_gpt.commands.launch import run_app
    from tui_gpt.link.protocol import Saved

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    class CrashedApp:
        """Stands in for GPTApp after an error in a handler: return code 1, and the save it made first."""

        def __init__(self, spec, out: str, **options) -> None:
            self.out, self.return_code, self.final_save = out, None, None

        def run(self) -> None:
            self.return_code, self.final_save = 1, Saved(self.out, 42)

    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setattr(tui_gpt.link.client, "prepare", lambda: None)
    monkeypatch.setattr(tui_gpt.app.gpt_app, "GPTApp", CrashedApp)
    out = tmp_path / "out"
    assert run_app(parser_app().parse_args(["fables", "--out", str(out)])) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"tui-gpt: the app stopped on an error (a bug, shown above); saved step 42 to {out}; "
        f"continue with: tui-gpt --resume {out}"
    )
