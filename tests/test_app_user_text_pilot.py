"""User text is text in the app too: a prompt, a folder, a file name or a message that looks like markup."""

from __future__ import annotations

from fake_trainer import TINY_TEXT, fake_factory, fake_spec
from pilot import (
    SIZE,
    answer,
    ask_error,
    open_palette,
    palette_options,
    running,
    screen_text,
    settle,
    sync,
    text_of,
    wait_for,
    wait_ready,
)

from tui_gpt.app.gpt_app import GPTApp
from tui_gpt.app.screens.ask import AskScreen
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.link.protocol import Loading

# A closing tag with nothing open (MarkupError), a style, a link, a theme variable, a capitalised tag.
MARKUP = "[/][bold][link=x][$error][B]"
STEPS = 10


@sync
async def test_markup_in_a_prompt_a_folder_a_file_name_and_a_message_is_shown_as_typed(tmp_path):
    text = tmp_path / "data[v2][bold].txt"  # was shown as "data.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out = tmp_path / "o[bold][link=x]"
    app = GPTApp(fake_spec(sources=[str(text)]), out=str(out), client_factory=fake_factory(steps=STEPS), prompt=MARKUP)
    async with running(app, SIZE) as pilot:
        await wait_ready(pilot, step=STEPS, ghost=False)
        assert text.name in text_of(app.query_one("#corpus-info"))

        # A status that names a file, then a trainer message that names a folder.
        app.client._emit(Loading(f"tokenizing {text.name}", 0, 1))
        await wait_for(pilot, lambda: f"tokenizing {text.name}" in text_of(app.query_one("#train-stats")))
        message = f"could not read {out}: {MARKUP}"
        app.client.fail_now(message, fatal=False)
        await wait_for(pilot, lambda: f"error: {message}" in text_of(app.query_one("#train-stats")))
        await settle(pilot)
        assert message in [n.message for n in app._notifications]

        # The prompt pinned as an example: the pinned line and its notice.
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the pin question")
        await answer(pilot, f"{MARKUP} -> fox")
        await wait_for(pilot, lambda: f"pinned {MARKUP} → " in text_of(app.query_one("#pinned")), what="the pin")
        assert any(MARKUP in n.message for n in app._notifications)

        # The palette's save command names the folder; the save's notice too.
        await open_palette(pilot, "save check")
        await wait_for(pilot, lambda: any(str(out) in o for o in palette_options(app)), what="the save command")
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.run_status.saved is not None, what="the save")
        await settle(pilot)
        assert f"saved step {STEPS} to {out}" in [n.message for n in app._notifications]

        # Dialogs: the question names the file; an error names what was typed.
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, AskScreen), what="the load question")
        await answer(pilot, MARKUP)
        assert ask_error(app) == f"{MARKUP}: no such file or directory"
        await answer(pilot, str(text))
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the reset question")
        assert text_of(app.screen.query_one(".question")).startswith(f"Train from scratch on {text}?")
        assert "".join(text.name.split()) in "".join(screen_text(app).split())  # drawn, wrapped where it may be
        await pilot.press("n")
        await settle(pilot)

        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.final_save is not None and (out / "model.safetensors").is_file()
