"""A generated text where copying from the context is what helps: the task of the circuits experiment (#28).

Each line picks a length P and draws a string of P letters, then repeats that string until the line is LINE
characters long. After its first P letters a line is predictable only from itself: the letter after each
position is the letter after the same position one repeat earlier, and across lines the strings are random.
This is Bietti et al.'s task (2023, "Birth of a Transformer: A Memory Viewpoint": sequences from a bigram
model, with tokens whose continuation is fixed within a sequence and random across sequences), made dense
(every position of the string repeats), and chosen by measuring (docs/learning-speed.md, "Watching an
induction head form"):

- The strings come from a fixed random bigram chain, as in the paper: the current letter says something
  about the next, so the model learns to read its own token first, and then to look for where it occurred
  before. With uniform strings, or the paper's sparse triggers, no induction head formed within 1,500
  steps; with strings where a letter depends on the one two before it, a copying circuit formed that
  attends one token late (the prefix-matching score does not see it).
- A position shortcut fails: P varies from line to line and a training window starts anywhere, so "attend
  k places back" is right for one P only (the shortcut #28 found on `qzkfmw qzkfmw`).
- P covers the heads probe's repeat lengths at a 64-token block (engine/heads.py: 4 to 31).

The text is the same on every machine: fixed seeds for the chain and for the strings.
"""

from __future__ import annotations

import random
import string

LETTERS = string.ascii_lowercase
SHORTEST, LONGEST = 4, 31  # the repeated string's length P: the heads probe's repeat lengths at block 64
LINE = 128  # characters per line: at least 4 repeats of the longest string
LINES = 4000  # about 516 KB: far more random strings than a small model can learn by heart
SEED = 28  # the strings' seed (the issue's number); a run's --seed changes the model and batches, not this
CHAIN_SEED = 12345  # the bigram chain's
CONCENTRATION = 0.3  # Dirichlet concentration of each letter's row: a few likely next letters, not one


def chain(seed: int = CHAIN_SEED) -> dict[str, list[float]]:
    """For each letter, the weights of the letter after it (Dirichlet rows, via gamma draws)."""
    rng = random.Random(seed)
    return {a: [rng.gammavariate(CONCENTRATION, 1) for _ in LETTERS] for a in LETTERS}


def induction_text(lines: int = LINES, seed: int = SEED) -> str:
    """`lines` lines, each a string from the chain repeated to LINE characters, with a newline after each."""
    rng = random.Random(seed)
    after = chain()
    out = []
    for _ in range(lines):
        p = rng.randint(SHORTEST, LONGEST)
        unit = [rng.choice(LETTERS)]
        while len(unit) < p:
            unit.append(rng.choices(LETTERS, after[unit[-1]])[0])
        out.append(("".join(unit) * (LINE // p + 1))[:LINE])
    return "\n".join(out) + "\n"
