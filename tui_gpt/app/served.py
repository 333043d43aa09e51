"""The app served by textual-serve: a closed browser tab is a hang-up, so the run saves as on ctrl+q.

textual-serve tells the app that its tab closed with a "quit" packet on stdin, which Textual's
web driver turns into an immediate exit: nothing was saved. If the server itself dies, stdin just
ends and the app kept training unseen. Both now reach the app as `HungUp`, which it treats as
the SIGHUP a closed terminal sends: save through the trainer, then exit.

Sizes come from a browser, which may send any number: the first in the environment (COLUMNS,
ROWS), later ones in resize packets. Each is clamped to a screen the app can lay out
(`settings.screen_size`); a malformed packet is ignored, where Textual would end the input thread.
`tui-gpt serve` checks the same before it relays a packet (commands/serve.py); this is the app's own end.
"""

from __future__ import annotations

import json
from typing import Any

from textual.app import App
from textual.driver import Driver
from textual.drivers.web_driver import WebDriver
from textual.message import Message

from tui_gpt.app.terminal_keys import as_key
from tui_gpt.settings import screen_size


class HungUp(Message):
    """The browser tab closed, or the server relaying it went away."""


class ServedDriver(WebDriver):
    """Textual's web driver, where losing the browser is a hang-up rather than an exit, and sizes are sane."""

    def __init__(
        self, app: App[Any], *, debug: bool = False, mouse: bool = True, size: tuple[int, int] | None = None
    ) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)  # the size from COLUMNS and ROWS
        self._size = screen_size(*self._size) if self._size is not None else None

    def _on_meta(self, packet_type: str, payload: bytes) -> None:
        try:
            meta = json.loads(payload)
        except (ValueError, RecursionError):  # Textual's would raise, and end the input thread
            return
        kind = meta.get("type") if isinstance(meta, dict) else None
        if isinstance(kind, str):
            self.on_meta(kind, meta)

    def on_meta(self, packet_type: str, payload: dict[str, object]) -> None:
        if packet_type == "quit":  # the websocket closed: the tab, the browser or the network went
            self._app.post_message(HungUp())
        elif packet_type == "resize":
            size = screen_size(payload.get("width"), payload.get("height"))
            if size is not None:  # a resize without a size: nothing to do
                super().on_meta(packet_type, {**payload, "width": size[0], "height": size[1]})
        else:
            super().on_meta(packet_type, payload)

    def process_message(self, message: Message) -> None:
        super().process_message(as_key(message))  # shift+F3 read as a cursor report (terminal_keys.py)

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # stdin ended while the app still runs: the server is gone
            self._app.post_message(HungUp())


def served_driver(driver: type[Driver]) -> type[Driver]:
    """The driver to use in place of `driver`: ours where textual-serve asked for its web driver."""
    return ServedDriver if driver is WebDriver else driver
