"""A generated text where only an induction head helps: the task of the circuits experiment (#28).

Each line picks a length P and a random string of P letters, then repeats that string until the line
is LINE characters long. Within a line the letter after each letter is fixed by the string (after its
first P letters the line is predictable); across lines it is random. This is Bietti et al.'s design
(2023, "Birth of a Transformer: A Memory Viewpoint": trigger tokens whose next token is fixed within a
sequence and random across sequences) with every letter a trigger and no bigram background, so that:

- nothing but the context predicts a letter: the unigram and bigram statistics are uniform;
- a position shortcut fails: P varies from line to line and a training window starts anywhere, so
  "attend k places back" is right for one P only (the shortcut #28 found on `qzkfmw qzkfmw`);
- the copy signal is dense: most tokens of a window can be copied, so the head forms in a few
  hundred steps where Bietti's sparse triggers (a few letters per sequence) gave no head in 1,500
  (docs/learning-speed.md, "Watching an induction head form");
- P covers the repeat lengths of the heads probe (probes/heads.py: MIN_PERIOD to 31 at a 64-token
  block), so the head the model forms is the one the probe measures.

The text is the same on every machine: a fixed seed, letters drawn with replacement, as the probe does.
"""

from __future__ import annotations

import random
import string

LETTERS = string.ascii_lowercase
SHORTEST, LONGEST = 4, 20  # the repeated string's length P, in letters all different
LINE = 128  # characters per line: at least 4 repeats of the longest string
LINES = 4000  # about 516 KB: far more random strings than a small model can learn by heart
SEED = 28  # the text's own seed (the number); a run's --seed changes the model and batches, not this


def induction_text(lines: int = LINES, seed: int = SEED) -> str:
    """`lines` lines, each a random string repeated to LINE characters, with a newline after each."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        p = rng.randint(SHORTEST, LONGEST)
        unit = "".join(rng.sample(LETTERS, p))  # all different: each letter has one successor in the line
        out.append((unit * (LINE // p + 1))[:LINE])
    return "\n".join(out) + "\n"
