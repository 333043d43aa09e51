"""The phase-change reading of a run's head scores (probes/phase.py)."""

from __future__ import annotations

from tui_gpt.probes.phase import find_phase_change


def _scores(best: list[float], icl: list[float]) -> list[dict[str, object]]:
    # 2 layers x 2 heads; the copying head is layer 2 head 1, the others stay at chance
    return [{"induction": [[0.05, 0.04], [b, 0.06]], "icl": c} for b, c in zip(best, icl, strict=True)]


def test_a_sharp_rise_is_marked_at_its_halfway_crossing_with_the_window_and_the_words() -> None:
    steps = [0, 100, 200, 300, 400, 500, 600]
    best = [0.07, 0.08, 0.09, 0.30, 0.62, 0.66, 0.65]
    icl = [0.0, -0.01, -0.02, -0.4, -1.1, -1.2, -1.2]
    pc = find_phase_change(steps, _scores(best, icl))
    assert pc is not None
    assert (pc.step, pc.start, pc.end) == (400, 200, 400)  # 0.30 < halfway (0.365) <= 0.62
    assert (pc.layer, pc.head) == (2, 1)
    assert (pc.induction_before, pc.induction_after) == (0.09, 0.62)
    assert (pc.icl_before, pc.icl_after) == (-0.02, -1.1)
    assert pc.words().startswith("layer 2 head 1 now copies: it attends to the token after the earlier occurrence")
    assert "0.09 -> 0.62" in pc.words() and "-1.08 nats" in pc.words()


def test_drift_and_short_runs_are_not_a_phase_change() -> None:
    steps = [0, 100, 200, 300]
    assert find_phase_change(steps, _scores([0.07, 0.1, 0.15, 0.2], [0, 0, 0, 0])) is None  # rise 0.13
    assert find_phase_change(steps[:2], _scores([0.07, 0.9], [0, -1])) is None
