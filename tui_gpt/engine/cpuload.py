"""Other processes' CPU use on this process's cores over a stretch of time, from Linux's /proc.

A speed trial run while something else loads the machine can pick badly (fewer threads win under
load), so a choice measured on a busy machine is not kept. Busy means the CPU time the cores this
process may run on spent outside it (other processes, the kernel on their behalf, and time a
hypervisor gave to other machines), in cores' worth on average.
"""

from __future__ import annotations

import os
import time

BUSY_CORES = 0.25  # others' average use above which a measurement is not kept
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpus() -> set[int] | None:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not on Linux
        return None


def _busy_ticks(cpus: set[int]) -> int:
    """Busy clock ticks of `cpus` since boot: all but idle and iowait (guest time is in user already)."""
    total = 0
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *rest = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in rest[:8])
                total += user + nice + system + irq + softirq + steal
    return total


def _own_ticks() -> int:
    """This process's user and system ticks, all its threads (fields 14 and 15 of /proc/self/stat)."""
    with open("/proc/self/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])


def _sample(cpus: set[int] | None) -> tuple[int, int, float] | None:
    if not cpus:
        return None
    try:
        return _busy_ticks(cpus), _own_ticks(), time.perf_counter()
    except (OSError, ValueError, IndexError):
        return None


class Load:
    """Started on creation; `others()` says how loaded the machine was since."""

    def __init__(self) -> None:
        self.cpus = _cpus()
        self.start = _sample(self.cpus)

    def others(self) -> float | None:
        """Cores' worth of CPU that others used since the start, on average; None where /proc cannot say."""
        end = _sample(self.cpus)
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        ticks = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return max(0.0, ticks / _TICK / (end[2] - self.start[2]))


def busy_note(others: float | None) -> str:
    """' (not cached: ...)' when others used more than BUSY_CORES, else ''."""
    if others is None or others <= BUSY_CORES:
        return ""
    return f" (not cached: the machine was busy, others used {others:.2f} cores)"
