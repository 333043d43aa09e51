"""Change the learning rate or the evaluation interval mid-run, without a reset."""

from __future__ import annotations

from tui_gpt.app.lab import Experiment
from tui_gpt.app.screens.ask import AskScreen, Refused, parse_number, parse_whole
from tui_gpt.link.protocol import SetEvalInterval, SetLr


def parse_lr(value: str) -> float | Refused:
    return parse_number(value, "lr", "the learning rate")


def parse_interval(value: str) -> int | Refused:
    return parse_whole(value, "eval_interval", "the interval", "a whole number of steps (0: never)")


class LiveSettings(Experiment):
    def set_lr(self) -> None:
        ui = self.ui

        def done(lr: float | None) -> None:
            if lr is not None:
                self.client.send(SetLr(lr))
                ui.notify(f"Peak learning rate {lr:g} from the next step (no reset).")

        current = str(self.run.spec.train.lr)
        ui.push_screen(AskScreen("Peak learning rate (applies now, no reset)", current, parse_lr), done)

    def set_eval_interval(self) -> None:
        ui = self.ui

        def done(every: int | None) -> None:
            if every is not None:
                self.client.send(SetEvalInterval(every))
                ui.notify(f"Evaluating every {every} steps (no reset)." if every else "Evaluation off.")

        current = str(self.run.spec.train.eval_interval)
        ui.push_screen(AskScreen("Evaluate every how many steps? (no reset)", current, parse_interval), done)
