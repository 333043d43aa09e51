"""Whitespace made visible, for showing tokens: kept apart so the app can import it before torch or tokenizers."""

_VISIBLE = str.maketrans({" ": "\u00b7", "\n": "\u21b5", "\t": "\u2192", "\r": "\u240d"})


def visible(text: str) -> str:
    """`text` with whitespace drawn: space as a middle dot, newline as a return arrow."""
    return text.translate(_VISIBLE)
