"""Keys that a terminal sends as something Textual reads otherwise: put back as the keys they are.

xterm, and tmux and most terminals after it, send shift+F3 as `ESC [ 1 ; 2 R`: the very bytes of a
cursor-position report ("row 1, column 2"). Textual reads them as one (`events.CursorPosition`) and the
key never arrives. The app runs full screen and never asks where the cursor is (only Textual's inline
mode does), so such a report is the key: it becomes f15, which keymap.py binds beside shift+f3
(`keymap.TERMINAL_ALIASES`). The drivers (hangup.TerminalDriver, served.ServedDriver) pass every
event from the terminal through `as_key`.
"""

from __future__ import annotations

from textual import events
from textual.message import Message

SHIFT_F3 = (1, 0)  # the report's (x, y) counted from 0: column 2, row 1
SHIFT_F3_KEY = "f15"  # what Textual calls the key when a terminal sends it as `ESC [ 28 ~`


def as_key(message: Message) -> Message:
    """`message`, or the key it really was."""
    if isinstance(message, events.CursorPosition) and (message.x, message.y) == SHIFT_F3:
        return events.Key(SHIFT_F3_KEY, None)
    return message
