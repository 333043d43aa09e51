import sys

from tui_gpt.cli import main

sys.exit(main())
