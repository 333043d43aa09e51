"""Pilot helpers for the app tests: run an app headless, wait for it, drive the palette, read the screen."""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fake_trainer import FAKE_SPEC, TRAIN_STEPS, make_app
from rich.console import Console
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.app.screens.ask import AskScreen
from tui_gpt.app.screens.choice import ChoiceScreen
from tui_gpt.app.screens.page import PageScreen
from tui_gpt.app.widgets.attention import AttentionMap
from tui_gpt.link.protocol import Losses
from tui_gpt.probes.predict import target_prob

SIZE = (160, 48)


def running(app: Any, size: tuple[int, int] = (160, 48)) -> Any:
    """`app.run_test(size=size)`."""
    return app.run_test(size=size)


@asynccontextmanager
async def ready(
    app: GPTApp, size: tuple[int, int] = SIZE, step: int | None = TRAIN_STEPS, ghost: bool = True
) -> AsyncIterator[tuple[GPTApp, Pilot]]:
    """Run `app` headless and wait until it is ready (see `wait_ready`): `async with ready(make_app(tmp_path))
    as (app, pilot):` opens most pilot tests."""
    async with running(app, size) as pilot:
        await wait_ready(pilot, step=step, ghost=ghost)
        yield app, pilot


# ---- pilot helpers ----------------------------------------------------------------


def sync(fn: Callable) -> Callable:
    """Run an async test function with asyncio.run, so no async pytest plugin is needed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    wrapper.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return wrapper


async def wait_for(pilot: Any, cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Let the app run until `cond()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    app = pilot.app
    while True:
        crashed = getattr(app, "_exception", None)
        if crashed is not None:
            raise AssertionError(f"the app crashed while waiting for {what}: {crashed!r}") from crashed
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.02)


async def settle(pilot: Any) -> None:
    """Process pending messages and the callbacks scheduled after the next refresh."""
    for _ in range(3):
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def wait_ready(
    pilot: Any, step: int | None = TRAIN_STEPS, ghost: bool = True, timeout: float = 30.0, settled: bool = True
) -> None:
    """Wait until the model is built, its trained weights are in, and (optionally) the ghost text is shown;
    then, unless not `settled`, until the app is idle (never, while a test's timers tick every millisecond)."""
    from tui_gpt.app.widgets.prompt import PromptInput
    from tui_gpt.app.widgets.topk import TopKBars

    app = pilot.app
    await wait_for(pilot, lambda: app.state.replica is not None, timeout, "the model (app.state.replica)")
    if step is not None:
        await wait_for(
            pilot,
            lambda: app.state.replica is not None and app.state.replica.step == step,
            timeout,
            f"weights of step {step}",
        )
    await wait_for(pilot, lambda: app.query_one(TopKBars).guesses, timeout, "top-k guesses")
    if ghost:
        await wait_for(pilot, lambda: app.query_one(PromptInput).ghost, timeout, "ghost text")
    if settled:
        await settle(pilot)


def text_of(widget: Any) -> str:
    """The plain text a one-line info widget shows, markup removed (Static, InfoLine or any render())."""
    from rich.text import Text
    from textual.content import Content

    markup = getattr(widget, "_render_markup", True)  # a widget made with markup=False shows its text as is
    for attr in ("text", "content"):  # InfoLine.text, Static.content: the markup as set
        value = getattr(widget, attr, None)
        if isinstance(value, str):
            return Content.from_markup(value).plain if markup else value
        if isinstance(value, Content | Text):
            return value.plain
    rendered = widget.render()
    if isinstance(rendered, Content | Text):
        return rendered.plain
    return Content.from_markup(rendered).plain if isinstance(rendered, str) else str(rendered)


def screen_text(app: Any) -> str:
    """The characters on screen now, as plain text (what a user would read)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def chart_drawn(app: Any) -> bool:
    """The loss chart is mounted and shows the whole curve."""
    pane = app.query_one("#training")
    return pane.chart is not None and not pane.curve.dirty


async def steady(pilot: Any, hints: bool = False) -> None:
    """For snapshots: the model is in, the panes are drawn, no worker runs, the cursor does not blink."""
    from tui_gpt.app.widgets.prompt import PromptInput

    app = pilot.app
    app.query_one(PromptInput).cursor_blink = False
    await wait_ready(pilot)
    await wait_for(pilot, lambda: "tok/s" in text_of(app.query_one("#train-stats")), what="the stats line")
    await wait_for(pilot, lambda: chart_drawn(app), what="the loss chart")
    if hints:
        await wait_for(pilot, lambda: text_of(app.query_one("#hints")), what="the hints")
    await app.workers.wait_for_complete()  # the ghost text and the greedy line come from thread workers
    await settle(pilot)


def palette_options(app: Any) -> list[str]:
    """The commands the open palette lists now, best match first."""
    options = app.screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def open_palette(pilot: Any, query: str) -> None:
    """Open the palette and search for `query`: set, as `answer` does, not typed key by key (each key waits for
    the app to go idle twice, and the palette searches again on each)."""
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), what="the palette")
    pilot.app.screen.query_one(Input).value = query
    await pilot.pause()


async def run_command(pilot: Any, query: str, title: str) -> None:
    """Type `query` into the palette and run `title` once it is the highlighted (first) hit."""
    await open_palette(pilot, query)

    def first_is_title() -> bool:
        options = pilot.app.screen.query_one(OptionList)
        found = palette_options(pilot.app)
        return bool(found) and found[0].startswith(title) and options.highlighted == 0

    await wait_for(pilot, first_is_title, what=f"{title!r} first in the palette")
    await pilot.press("enter")


async def open_screen(pilot: Any, key: str, kind: type) -> None:
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind), what=f"{kind.__name__} after {key}")
    await settle(pilot)


# ---- the lab's pages --------------------------------------------------------------------


def lab_app(tmp_path: Path, prompt: str = "The quick brown", **fake) -> GPTApp:
    """An app on a private copy of FAKE_SPEC, which every test of the session shares."""
    spec = replace(FAKE_SPEC, train=replace(FAKE_SPEC.train))
    return make_app(tmp_path, spec=spec, prompt=prompt, **fake)


def flat(text: str) -> str:
    """Whitespace collapsed, so wrapped lines still match."""
    return " ".join(text.split())


def shown(app: GPTApp) -> str:
    return flat(screen_text(app))


def page_text(app: GPTApp, width: int = 106) -> str:
    """The whole body of the open PageScreen as plain text, also the part scrolled out of view."""
    body = app.screen.query_one("#page-body", Static).content
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(body)
    return console.export_text()


def events_of(app: GPTApp, kind: type) -> list:
    return [ev for ev in app.client.events if isinstance(ev, kind)]


def p_target_of(app: GPTApp, prefix_ids: list[int], target: int) -> float:
    """p(target | prefix) under the app's current weights."""
    return target_prob(app.state.replica.model, prefix_ids, target)


def masked_cells(app: GPTApp) -> int:
    """How many masked ("··") cells the attention heatmap draws."""
    return sum(s.text.count("··") for s in app.query_one(AttentionMap)._strips[2:])


async def choose(pilot, key: str) -> None:
    """Click the answer `key` of the open ChoiceScreen."""
    assert isinstance(pilot.app.screen, ChoiceScreen)
    await pilot.click(f"#choice-{key}")
    await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ChoiceScreen), what="the choice to close")
    await settle(pilot)


async def answer(pilot, text: str) -> None:
    """Replace the open AskScreen's text with `text` and submit it (set, not typed key by key: paths are long)."""
    assert isinstance(pilot.app.screen, AskScreen)
    field = pilot.app.screen.query_one(Input)
    assert field.has_focus
    field.value = text
    await pilot.press("enter")
    await settle(pilot)


def ask_error(app: GPTApp) -> str:
    return text_of(app.screen.query_one("#answer-error"))


async def wait_page(pilot, needle: str, what: str) -> str:
    """Wait until the open PageScreen shows `needle` (wrapped or not); its page text."""
    await wait_for(
        pilot,
        lambda: isinstance(pilot.app.screen, PageScreen) and needle in flat(page_text(pilot.app)),
        what=what,
    )
    await settle(pilot)
    return page_text(pilot.app)


async def steady_with_hints(pilot) -> None:
    await steady(pilot, hints=True)


async def quiet(pilot) -> None:
    """Nothing left to run: workers done (also those started after the last refresh), screen settled."""
    for _ in range(2):
        await settle(pilot)
        await pilot.app.workers.wait_for_complete()
    await settle(pilot)


async def token_view(pilot: Any) -> None:
    """Switch the top-k and the examples from words (the default) to tokens."""
    from tui_gpt.app.widgets.topk import TopKBars

    await pilot.press("ctrl+f")
    await wait_for(pilot, lambda: not pilot.app.query_one(TopKBars).by_word, what="the token view")
    await settle(pilot)


def evaluations(points: list[tuple[int, float, float]]) -> Losses:
    """Evaluations at (step, train, val), as the trainer reports them."""
    return Losses(
        [
            {
                "step": s,
                "loss": t,
                "lr": 1e-2,
                "tokens_per_s": 12345.0,
                "elapsed": 0.25 * s,
                "val_loss": v,
                "eval_train_loss": t,
            }
            for s, t, v in points
        ]
    )
