"""tui-gpt: watch a small GPT learn, in the terminal."""

__version__ = "0.1.0"
