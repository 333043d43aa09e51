"""Whitespace and control characters made visible, for showing tokens.

Kept apart so the app can import it before torch or tokenizers.
"""

from rich.text import Text

_DRAWN = {" ": "\u00b7", "\n": "\u21b5", "\t": "\u2192", "\r": "\u240d"}


def _escape(code: int) -> str:
    # C0 controls and DEL as \xNN, the way a byte fragment shows; C1 controls and the Unicode line and
    # paragraph separators as \uNNNN, so that they never read as the byte fragment \x85.
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_VISIBLE = str.maketrans({**{chr(c): _escape(c) for c in _CONTROLS}, **_DRAWN})
_ESCAPED = {chr(c): _escape(c) for c in _CONTROLS}
_ONE_LINE = str.maketrans(_ESCAPED)
_LINES = str.maketrans({k: v for k, v in _ESCAPED.items() if k not in "\n\t"})


def visible(text: str) -> str:
    """`text` drawn for a table cell: space as a middle dot, newline as a return arrow, tab as an arrow,
    and every other control character (a form feed, an escape) as an escape such as `\\x0c`."""
    return text.translate(_VISIBLE)


def cell(text: str) -> Text:
    """A token or word for a Rich table cell: whitespace drawn, and plain text ("[/]" is shown, not read as markup)."""
    return Text(visible(text))


def shown(text: object) -> str:
    """A name, path or message for a terminal, on one line: every control character (an escape, a
    newline) as an escape such as `\\x1b`, so that a file called `ESC[2J` cannot clear the screen."""
    return str(text).translate(_ONE_LINE)


def printable(text: str) -> str:
    """Text (a sample) for a terminal: newlines and tabs kept, every other control character escaped."""
    return text.translate(_LINES)
