"""Whitespace made visible, for showing tokens: kept apart so the app can import it before torch or tokenizers."""

from rich.text import Text

_VISIBLE = str.maketrans({" ": "\u00b7", "\n": "\u21b5", "\t": "\u2192", "\r": "\u240d"})


def visible(text: str) -> str:
    """`text` with whitespace drawn: space as a middle dot, newline as a return arrow."""
    return text.translate(_VISIBLE)


def cell(text: str) -> Text:
    """A token or word for a Rich table cell: whitespace drawn, and plain text ("[/]" is shown, not read as markup)."""
    return Text(visible(text))
