import sys

from tui_gpt.commands.cli import main

sys.exit(main())
