"""The Textual app. Importing this package sets Textual's frame rate before Textual loads."""

import os

# A key's new bars wait for the next frame: at Textual's default 60 fps that is up to 17 ms of
# a 33 ms budget. Frames are drawn only when something changed, so 120 costs nothing idle.
os.environ.setdefault("TEXTUAL_FPS", "120")
