"""The app served by textual-serve: a closed browser tab is a hang-up, so the run saves as on ctrl+q.

textual-serve tells the app that its tab closed with a "quit" packet on stdin, which Textual's
web driver turns into an immediate exit: nothing was saved. If the server itself dies, stdin just
ends and the app kept training unseen. Both now reach the app as `HungUp`, which it treats as
the SIGHUP a closed terminal sends: save through the trainer, then exit.
"""

from __future__ import annotations

from textual.driver import Driver
from textual.drivers.web_driver import WebDriver
from textual.message import Message


class HungUp(Message):
    """The browser tab closed, or the server relaying it went away."""


class ServedDriver(WebDriver):
    """Textual's web driver, where losing the browser is a hang-up rather than an exit."""

    def on_meta(self, packet_type: str, payload: dict[str, object]) -> None:
        if packet_type == "quit":  # the websocket closed: the tab, the browser or the network went
            self._app.post_message(HungUp())
        else:
            super().on_meta(packet_type, payload)

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # stdin ended while the app still runs: the server is gone
            self._app.post_message(HungUp())


def served_driver(driver: type[Driver]) -> type[Driver]:
    """The driver to use in place of `driver`: ours where textual-serve asked for its web driver."""
    return ServedDriver if driver is WebDriver else driver
