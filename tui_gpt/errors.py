"""The one error type the user sees: a single line that says what went wrong and what to do."""

from __future__ import annotations

import errno
import os
import re
import sys

# What writing gives on a full disk (or a quota, or a file size limit), and on a read-only one.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
WRITE_ERRORS = NO_ROOM | {errno.EROFS}  # reading never gives these


# Control characters as escapes (`\x1b`), the way visible.shown draws them (this floor may not import it).
_SHOWN = str.maketrans(
    {chr(c): f"\\x{c:02x}" if c < 0x80 else f"\\u{c:04x}" for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
)


class TuiGptError(Exception):
    """A problem with the user's input or files, reported as one line, never a traceback."""


def report(exc: TuiGptError) -> int:
    """Print the one line of `exc` on stderr; returns the exit status for it.

    A message names files, folders and runs, which may hold an escape or a newline: shown escaped.
    """
    print(f"tui-gpt: error: {str(exc).translate(_SHOWN)}", file=sys.stderr)
    return 2


def error_code(exc: BaseException) -> int | None:
    """The errno of an OSError, or of a safetensors error that names one ('os error 28')."""
    code = getattr(exc, "errno", None)
    if code is None:
        found = re.search(r"code: (\d+)|os error (\d+)", str(exc))
        code = int(found.group(1) or found.group(2)) if found else None
    return code


def reason(exc: BaseException) -> str:
    """An OS or safetensors write error in a few words: 'no space left on device'."""
    if code := error_code(exc):
        text = os.strerror(code)
        return text[:1].lower() + text[1:]
    return str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
