"""`--dtype auto`, checked on the real run: the trial's choice against its runners-up, on real steps.

The trial (autotune.py) times a throwaway model for a few seconds, and a short trial on a loaded
machine can pick wrong. So once per run, from step START on, the run's own steps take turns in
blocks of BLOCK: the chosen way, then each runner-up, for ROUNDS rounds. A runner-up more than
DROP times slower than the choice is dropped after 3 timed steps, which keeps the check's cost
near 1% of a 2,000-step run (4 slow steps per runner-up, or 32 steps at most DROP times slower).
The fastest by median ms/step runs from then on, and goes to the cache unless other processes
loaded the machine meanwhile. The weights, the batches and the step count are the run's own: the
ways differ only in the dtype's rounding and the attention path's.
"""

from __future__ import annotations

from statistics import median

from tui_gpt.engine.autotune import Choice, Way, label, remember
from tui_gpt.engine.cpuload import BUSY_CORES, Load, busy_note

START = 50  # steps into the run before the check: the allocator and the caches are warm by then
BLOCK = 8  # steps run one way before the next; the first after a switch is not counted
ROUNDS = 4
DROP = 1.25  # a runner-up this much slower than the choice after the first round is tried no more
MARGIN = 0.98  # switch for a 2% gain or more: less is noise
GIVE_UP = 1000  # steps: a run whose thread count keeps changing (the app, while keys arrive) stops checking


class DtypeCheck:
    """Feed it every training step's seconds; it says which way to run the next step, then what won."""

    def __init__(self, choice: Choice, start: int | None = None) -> None:
        self.choice = choice
        self.start = START if start is None else start  # steps before the check: 0 for a check again (warm)
        self.ways = list(dict.fromkeys([choice.way, *choice.alts]))
        self.active = list(self.ways)
        self.times: dict[Way, list[float]] = {w: [] for w in self.ways}
        self.steps = 0  # steps seen
        self.pos = 0  # the way running now: active[pos]
        self.counted = 0  # steps counted in this block
        self.rounds = 0
        self.load: Load | None = None
        self.skip = False  # the next step is not timed: an evaluation ran before it
        self.done = len(self.ways) == 1
        self.result: Choice | None = None  # once done: the way that won, its note the line to show

    @property
    def current(self) -> Way:
        return self.active[self.pos]

    @property
    def switches_threads(self) -> bool:
        """Whether the ways differ in thread count (only where the trial measured thread counts)."""
        return len({w[2] for w in self.ways}) > 1

    def observe(self, seconds: float, threads: int) -> Way | None:
        """Count one step of `seconds`, run on `threads` threads; the way for the next step when it changes."""
        self.steps += 1
        if self.steps == 1 and self.start == 0:  # a check again starts at once
            self.load = Load()
        if self.done or self.steps <= self.start:
            self.load = Load() if self.steps == self.start else self.load
            return None
        if self.steps - self.start > GIVE_UP:
            self.done = True  # no answer and no note: the run goes on the way the trial chose
            return self.ways[0] if self.current != self.ways[0] else None
        before, skip, self.skip = self.current, self.skip, False
        if threads == before[2] and not skip:  # the app lowers the thread count while keys arrive
            if self.counted > 0:  # the first step of a block pays for the switch (thread pool, allocator)
                self.times[before].append(seconds)
            self.counted += 1
        if self.counted >= BLOCK or self._hopeless(before):
            self._next_block()
        return self.current if self.current != before else None

    def evaluated(self) -> None:
        """An evaluation ran: the next step finds the caches cold, so its time says little about its way."""
        self.skip = True

    def _hopeless(self, way: Way) -> bool:
        """Whether a runner-up in its first block is already more than DROP times slower than the choice."""
        v, chosen = self.times[way], self.times[self.ways[0]]
        return self.rounds == 0 and way != self.ways[0] and len(v) >= 3 and median(v) > DROP * median(chosen)

    def _next_block(self) -> None:
        self.counted = 0
        self.pos += 1
        if self.pos < len(self.active):
            return
        self.pos, self.rounds = 0, self.rounds + 1
        if self.rounds == 1:
            limit = DROP * median(self.times[self.ways[0]])
            self.active = [w for w in self.active if w == self.ways[0] or median(self.times[w]) <= limit]
        if self.rounds >= ROUNDS or len(self.active) == 1:
            self._finish()

    def _finish(self) -> None:
        """Keep the fastest (the choice unless another beats it by MARGIN), say so, and cache it."""
        ms = {w: 1000 * median(v) for w, v in self.times.items()}
        ranked = sorted(ms, key=ms.__getitem__)
        chosen, fastest = self.ways[0], ranked[0]
        winner = fastest if ms[fastest] < MARGIN * ms[chosen] else chosen
        self.active, self.pos, self.done = [winner], 0, True
        show = self.switches_threads
        where = f"steps {self.start + 1}-{self.steps} of this run"
        # What the choice promised: the trial's ms/step, or a past run's where it came from the cache.
        said = f" (expected {self.choice.ms:.1f})" if self.choice.ms else ""
        if winner == chosen:
            against = ", ".join(f"{label(w, show)} {ms[w]:.1f}" for w in ranked if w != winner)
            note = f"kept {label(winner, show)}: {ms[winner]:.1f} ms/step in {where}{said}, against {against}"
        else:
            note = (
                f"switched to {label(winner, show)}: {ms[winner]:.1f} ms/step against "
                f"{label(chosen, show)} {ms[chosen]:.1f} ms/step{said} in {where}"
            )
        result = Choice(*winner, note, [w for w in ranked if w != winner], ms[winner], self.choice.key)
        busy = busy_note(self.load.others() if self.load else None)
        if not busy and result.key:
            why = ", ".join(f"{label(w)} {ms[w]:.1f}" for w in ranked)
            remember(result, f"{label(winner)}: fastest in {self.steps - self.start} steps of a run, ms/step {why}")
        result.note += busy
        self.result = result


WATCH_EVERY = 100  # steps between looks at the other processes' load, once a check has decided
WATCH_SAME = 2  # looks in a row on the other side of BUSY_CORES before checking again (a typing burst is not load)


class LoadWatch:
    """After a check: whether other processes' use of the cores has moved across BUSY_CORES, and stayed.

    A thread count and dtype chosen on a quiet machine can be wrong beside other work, and the other
    way round, so when the load changes side for WATCH_SAME looks in a row the run checks again.
    """

    def __init__(self, busy: bool) -> None:
        self.busy = busy  # how the machine was when the ways were last timed
        self.steps = 0
        self.flipped = 0  # looks in a row that saw the other side
        self.others = 0.0  # the last look's figure, in cores
        self.load = Load()

    def observe(self) -> bool:
        """Count a step; True when the load has changed side and it is time to check again."""
        self.steps += 1
        if self.steps % WATCH_EVERY:
            return False
        others, self.load = self.load.others(), Load()
        if others is None:
            return False
        self.others = others
        self.flipped = self.flipped + 1 if (others > BUSY_CORES) != self.busy else 0
        if self.flipped < WATCH_SAME:
            return False
        self.busy, self.flipped = not self.busy, 0
        return True


def ways_again(way: Way, dtypes: list[str], counts: list[int]) -> list[Way]:
    """The ways to time again from `way`: it first, then the other dtypes and thread counts, each and both."""
    dtype, sdpa, threads = way
    others = [(d, sdpa, n) for n in [threads, *counts] for d in [dtype, *dtypes]]
    return list(dict.fromkeys([way, *others]))
