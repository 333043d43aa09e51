"""Experiment: pin one example, prefix -> target, and track p(target) as the model trains. Is it learning *this*?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.content import Content

from tui_gpt.app.lab import Experiment
from tui_gpt.app.messages import Pinned
from tui_gpt.app.screens.ask import AskScreen, Refused
from tui_gpt.visible import visible

if TYPE_CHECKING:
    from tui_gpt.app.prompt_probes import Probes
    from tui_gpt.app.state import Doors


def parse_example(value: str) -> tuple[str, str] | Refused:
    """ "prefix -> target" as (prefix, target), the prefix's trailing spaces and the target's spaces cut."""
    if "->" not in value:
        return Refused("write it as: prefix -> target")
    prefix, target = value.rsplit("->", 1)
    prefix, target = prefix.rstrip(), target.strip()
    return (prefix, target) if prefix.strip() and target else Refused("both a prefix and a target are needed")


class PinExperiment(Experiment):
    pinned: dict[str, Any] | None = None  # prefix, ids, target, series [(step, p)]

    def __init__(self, doors: Doors, probes: Probes) -> None:
        super().__init__(doors)
        self.probes = probes  # the top-k's last guess, the suggested target

    def start(self) -> None:
        prompt = self.prompt
        # Suggest the ghost's next word: a lone space or subword is no readable target.
        guess = (prompt.ghost or self.probes.last_guess or "").strip()

        def done(example: tuple[str, str] | None) -> None:
            if example is not None:
                self.pin(*example)

        self.ui.push_screen(
            AskScreen("Pin an example, as: prefix -> target", f"{prompt.value} -> {guess}", parse_example), done
        )

    def pin(self, prefix: str, target: str) -> None:
        ui, replica = self.ui, self.run.replica
        if replica is None:
            return
        tok = replica.tokenizer
        # The target follows the prefix with a space, as it would in running text.
        ids = tok.encode(prefix + " " + target)
        prefix_ids = tok.encode(prefix)
        if len(ids) <= len(prefix_ids):
            ui.notify("The target adds no token to the prefix.", severity="warning")
            return
        target_id = ids[len(prefix_ids)]
        self.pinned = {"prefix": prefix, "ids": prefix_ids, "target": target_id, "word": target, "series": []}
        note = "" if len(ids) == len(prefix_ids) + 1 else f" (its first token, {visible(tok.token_texts[target_id])!r})"
        ui.notify(f"Tracking p({target}{note} | {prefix}) as the model trains.", title="Pinned", markup=False)
        self.track()
        ui.post_message(Pinned(prefix_ids, target_id, target))  # the top-k marks the target, from now on

    def track(self) -> None:
        """Record p(target | prefix) for the current weights; called on every weight update."""
        pin, replica = self.pinned, self.run.replica
        if pin is None or replica is None:
            return
        p = replica.prob(pin["ids"], pin["target"])
        series = pin["series"]
        if not series or series[-1][0] != replica.step:
            series.append((replica.step, p))
        target = visible(replica.tokenizer.token_texts[pin["target"]])
        first = f" (was {series[0][1]:.3f} at step {series[0][0]})" if len(series) > 1 else ""
        line = f"pinned [b]$prefix → $target[/b]: p = [b]{p:.3f}[/b] at step {replica.step}{first}"
        self.training.show_pinned(
            Content.from_markup(line, prefix=pin["prefix"][-30:], target=target), [v for _, v in series[-200:]]
        )
