"""Change the learning rate or the evaluation interval mid-run, without a reset."""

from __future__ import annotations

from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.ask import AskScreen
from tui_gpt.link.protocol import SetEvalInterval, SetLr
from tui_gpt.settings import problem


def check_lr(value: str) -> str | None:
    try:
        why = problem("lr", float(value))
    except ValueError:
        return "not a number"
    return f"the learning rate {why}" if why else None


def check_interval(value: str) -> str | None:
    if not value.isdigit():
        return "a whole number of steps (0: never)"
    why = problem("eval_interval", int(value))
    return f"the interval {why}" if why else None


class LiveSettings(Experiment):
    def set_lr(self) -> None:
        ui = self.ui

        def done(value: str | None) -> None:
            if value:
                self.client.send(SetLr(float(value)))
                ui.notify(f"Peak learning rate {float(value):g} from the next step (no reset).")

        current = str(self.run.spec.train.lr)
        ui.push_screen(AskScreen("Peak learning rate (applies now, no reset)", current, check_lr), done)

    def set_eval_interval(self) -> None:
        ui = self.ui

        def done(value: str | None) -> None:
            if value:
                self.client.send(SetEvalInterval(int(value)))
                ui.notify(f"Evaluating every {value} steps (no reset)." if int(value) else "Evaluation off.")

        current = str(self.run.spec.train.eval_interval)
        ui.push_screen(AskScreen("Evaluate every how many steps? (no reset)", current, check_interval), done)
