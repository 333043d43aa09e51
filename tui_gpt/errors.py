"""The one error type the user sees: a single line that says what went wrong and what to do."""


class TuiGptError(Exception):
    """A problem with the user's input or files, reported as one line, never a traceback."""
