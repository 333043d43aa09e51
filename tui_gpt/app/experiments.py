"""The lab: experiments that make the lesson visible, as actions on the app.

A mixin for `GPTApp`: each action asks the trainer or the app's lens a question and shows
the answer on a small screen. Nothing here trains by itself; the trainer does, on command.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import work

from tui_gpt.app.screens.dialogs import AskScreen, ChoiceScreen, TextScreen
from tui_gpt.app.widgets.line import InfoLine
from tui_gpt.protocol import ExampleStepped, Memorized, TokenCounts
from tui_gpt.visible import visible

if TYPE_CHECKING:
    from tui_gpt.app.app import GPTApp

SAMPLE_TOKENS = 200
GREEDY_TOKENS = 32
MIN_MATCH = {"char": 16, "bpe": 6, "word": 4}  # tokens: roughly three or four words


class LabActions:
    """Mixed into GPTApp; `self` is the app."""

    mask_off = False
    pinned: dict | None = None
    pending_counts: TextScreen | None = None
    pending_memo: TextScreen | None = None
    pending_step: TextScreen | None = None

    # ---- 1. the mask experiment --------------------------------------------------
    def action_mask_experiment(self: GPTApp) -> None:
        if self.mask_off:
            self.client.send("set_causal", causal=True)
            self._set_mask(False)
            self.notify("Causal mask back on: normal training.", title="Mask experiment")
            return

        def chosen(answer: str | None) -> None:
            if answer == "current":
                self.client.send("set_causal", causal=False)
                self._set_mask(True)
            elif answer == "scratch":
                from dataclasses import replace

                self.reset(replace(self.spec, causal=False, resume=None))
                self._set_mask(True)

        self.push_screen(
            ChoiceScreen(
                "Train WITHOUT the causal mask? Every position will see the tokens after it, so the "
                "train loss collapses by copying the answer, while greedy generation (which has no "
                "future to copy) turns to nonsense. Press the same key again to switch back.",
                [("current", "From current weights"), ("scratch", "From scratch")],
            ),
            chosen,
        )

    def _set_mask(self: GPTApp, off: bool) -> None:
        self.mask_off = off
        self.spec.causal = not off
        if self.lens is not None:
            self.lens.set_causal(not off)
        self.sub_title = "MASK OFF: the causal-mask experiment is running" if off else ""
        pane = self.query_one("#training")
        pane.set_class(off, "-mask-off")
        pane.border_title = "Training · MASK OFF (f2 to restore)" if off else "Training"
        self.refresh_probes()
        self._update_greedy()

    @work(thread=True, exclusive=True, group="greedy", exit_on_error=False)
    def _update_greedy(self: GPTApp) -> None:
        """A greedy sample of the prompt, so the mask experiment's nonsense shows."""
        lens, prompt = self.lens, self.query_one("#prompt").value
        if lens is None:
            return
        ids = lens.sample(prompt, GREEDY_TOKENS, temperature=0)
        text = visible(lens.tokenizer.decode(ids))
        label = "[b $error]greedy, mask off:[/] " if self.mask_off else "greedy: "
        self.call_from_thread(self._show_greedy, label + text)

    def _show_greedy(self: GPTApp, text: str) -> None:
        if not self.leaving:
            self.query_one("#greedy", InfoLine).text = text

    # ---- 2. a pinned example -------------------------------------------------------
    def action_pin(self: GPTApp) -> None:
        prompt = self.query_one("#prompt")
        # Suggest the ghost's next word: a lone space or subword is no readable target.
        guess = (prompt.ghost or self._last_guess or "").strip()
        default = f"{prompt.value} -> {guess}"

        def check(value: str) -> str | None:
            if "->" not in value:
                return "write it as: prefix -> target"
            prefix, target = (x for x in value.rsplit("->", 1))
            return None if prefix.strip() and target.strip() else "both a prefix and a target are needed"

        def done(value: str | None) -> None:
            if value:
                self._pin(value)

        self.push_screen(AskScreen("Pin an example, as: prefix -> target", default, check), done)

    def _pin(self: GPTApp, value: str) -> None:
        prefix, target = value.rsplit("->", 1)
        prefix = prefix.rstrip()
        target = target.strip()
        tok = self.lens.tokenizer if self.lens else None
        if tok is None:
            return
        # The target follows the prefix with a space, as it would in running text.
        ids = tok.encode(prefix + " " + target)
        prefix_ids = tok.encode(prefix)
        if len(ids) <= len(prefix_ids):
            self.notify("The target adds no token to the prefix.", severity="warning")
            return
        target_id = ids[len(prefix_ids)]
        self.pinned = {"prefix": prefix, "ids": prefix_ids, "target": target_id, "series": []}
        note = "" if len(ids) == len(prefix_ids) + 1 else f" (its first token, {visible(tok.token_texts[target_id])!r})"
        self.notify(f"Tracking p({target}{note} | {prefix}) as the model trains.", title="Pinned")
        self._track_pinned()
        self.refresh_probes()  # the top-k marks the target at once

    def _track_pinned(self: GPTApp) -> None:
        """Record p(target | prefix) for the current weights; called on every weight update."""
        pin = self.pinned
        if pin is None or self.lens is None:
            return
        from tui_gpt.probe import analyze

        lens = self.lens
        guesses = analyze(lens.model, lens.tokenizer, pin["ids"], k=lens.tokenizer.vocab_size, attention=False)
        p = next(g.prob for g in guesses.prediction.guesses if g.id == pin["target"])
        series = pin["series"]
        if not series or series[-1][0] != lens.step:
            series.append((lens.step, p))
        chart = self.query_one("#pinned-chart")
        chart.data = [v for _, v in series[-200:]]
        chart.add_class("-on")
        target = visible(lens.tokenizer.token_texts[pin["target"]])
        first = f" (was {series[0][1]:.3f} at step {series[0][0]})" if len(series) > 1 else ""
        self.query_one(
            "#pinned", InfoLine
        ).text = f"pinned [b]{pin['prefix'][-30:]} → {target}[/b]: p = [b]{p:.3f}[/b] at step {lens.step}{first}"

    # ---- 3. surprisal colouring ---------------------------------------------------
    def action_surprisal(self: GPTApp) -> None:
        if self.lens is None:
            return
        from tui_gpt.app.screens.surprisal import SurprisalScreen

        passages = (self.ready.corpus.get("passages") or []) if self.ready else []
        sources = [("prompt", "The prompt")]
        if passages:
            sources.append(("passage", "A corpus passage"))
        if self.last_sample:
            sources.append(("sample", "The last sample"))

        def chosen(which: str | None) -> None:
            text = {
                "prompt": self.query_one("#prompt").value,
                "passage": passages[0] if passages else "",
                "sample": self.last_sample or "",
            }.get(which or "")
            if text is not None and which:
                self.push_screen(SurprisalScreen(self.lens, text, dict(sources)[which].lower()))

        self.push_screen(ChoiceScreen("Colour which text by surprisal?", sources), chosen)

    # ---- 4. the tokenizer view ------------------------------------------------------
    def action_tokens(self: GPTApp) -> None:
        if self.lens is None:
            return
        from tui_gpt.lab import describe_ids

        text = self.query_one("#prompt").value
        tok = self.lens.tokenizer
        ids = tok.encode(text)
        table = Table(title=f"{len(ids)} {tok.kind} tokens: what the model sees", expand=False)
        for col in ("#", "id", "token", "note"):
            table.add_column(col)
        for i, info in enumerate(describe_ids(tok, ids)):
            note = "special" if info.special else ("byte fragment" if info.fragment else "")
            table.add_row(str(i), str(info.id), visible(info.text), note)
        screen = TextScreen("Tokenizer view", Text("counting tokens under char, bpe and word…", style="dim"))
        self.pending_counts = screen
        self._token_table = table
        self.push_screen(screen)
        self.client.send("token_counts", text=text)

    # ---- 5. the temperature view -----------------------------------------------------
    def action_temperature_view(self: GPTApp) -> None:
        if self.lens is None:
            return
        from tui_gpt.lab import temperature_table

        tok = self.lens.tokenizer
        logits = self.lens.logits(tok.encode(self.query_one("#prompt").value))[-1]
        rows = temperature_table(logits, self.temperature, self.top_k)
        table = Table(title=f"logits → logits / T (T = {self.temperature:g}) → softmax", expand=False)
        for col in ("token", "logit", f"logit / {self.temperature:g}", "softmax p"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(visible(tok.token_texts[r.id]), f"{r.logit:.3f}", f"{r.scaled:.3f}", f"{r.prob:.2%}")
        note = Text(
            "\nDividing by T > 1 flattens the distribution (more surprising samples); T < 1 sharpens it. ↑/↓ change T.",
            style="dim",
        )
        self.push_screen(TextScreen("Temperature view", _stack(table, note)))

    # ---- 6. one step on one example ---------------------------------------------------
    def action_one_step(self: GPTApp) -> None:
        if self.lens is None:
            return
        tok = self.lens.tokenizer
        if self.pinned:
            ids = [*self.pinned["ids"], self.pinned["target"]]
        else:
            ids = tok.encode(self.query_one("#prompt").value)
        if len(ids) < 2:
            self.notify("Type a prompt of at least two tokens: its last token is the target.", severity="warning")
            return
        screen = TextScreen(
            "One step on one example",
            Text(f"{visible(tok.decode(ids[:-1]))} → {visible(tok.token_texts[ids[-1]])}: stepping…"),
        )
        self.pending_step = screen
        self._step_ids = ids
        self.push_screen(screen)
        self.client.send("step_on", ids=ids)

    # ---- 7. the memorization check ----------------------------------------------------
    def action_memorization(self: GPTApp) -> None:
        if self.lens is None:
            return
        screen = TextScreen("Memorization check", Text("sampling…", style="dim"))
        self.pending_memo = screen
        self.push_screen(screen)
        self._sample_for_memo(self.lens, self.query_one("#prompt").value)

    @work(thread=True, exclusive=True, group="memo", exit_on_error=False)
    def _sample_for_memo(self: GPTApp, lens: Any, prompt: str) -> None:
        ids = lens.sample(prompt, SAMPLE_TOKENS, temperature=0.8, seed=0)
        self.last_sample = lens.tokenizer.decode(ids)
        n = MIN_MATCH.get(lens.tokenizer.kind, 8)
        self.call_from_thread(self.client.send, "memorization", ids=ids, min_len=n)

    # ---- events from the trainer for the lab -----------------------------------------
    def lab_event(self: GPTApp, ev: Any) -> bool:
        """Show a lab result; True if `ev` was one. A page closed meanwhile gets nothing."""
        open_pages = set(self.screen_stack)
        for name in ("pending_counts", "pending_step", "pending_memo"):
            if getattr(self, name) not in open_pages:
                setattr(self, name, None)
        if isinstance(ev, TokenCounts) and self.pending_counts is not None:
            counts = Table(title="the same text under each tokenizer", expand=False)
            counts.add_column("tokenizer")
            counts.add_column("tokens", justify="right")
            for kind, n in ev.counts.items():
                counts.add_row(kind + (" (this run)" if self.lens and kind == self.lens.tokenizer.kind else ""), str(n))
            self.pending_counts.update(_stack(self._token_table, counts))
            self.pending_counts = None
            return True
        if isinstance(ev, ExampleStepped) and self.pending_step is not None:
            self.pending_step.update(_step_report(self, ev))
            self.pending_step = None
            return True
        if isinstance(ev, Memorized) and self.pending_memo is not None:
            self.pending_memo.update(_memo_report(self, ev))
            self.pending_memo = None
            return True
        return isinstance(ev, TokenCounts | ExampleStepped | Memorized)

    # ---- 8. is this normal? -------------------------------------------------------------
    def _update_hints(self: GPTApp) -> None:
        if self.ready is None:
            return
        from tui_gpt.lab import run_hints

        hints = run_hints(self.query_one("#training").curve.history(), self.ready.baselines)
        colour = {"info": "$text-muted", "warn": "$warning", "error": "$error"}
        self.query_one("#hints", InfoLine).text = "  ".join(f"[{colour[h.severity]}]{h.text}[/]" for h in hints[:2])

    # ---- 9. compare checkpoints -----------------------------------------------------------
    def action_compare(self: GPTApp) -> None:
        def check(value: str) -> str | None:
            return None if (Path(value).expanduser() / "config.json").exists() else f"{value}: not a checkpoint"

        def done(value: str | None) -> None:
            if value:
                screen = TextScreen("Compare checkpoints", Text("loading and evaluating…", style="dim"))
                self.push_screen(screen)
                self._compare(value, self.query_one("#prompt").value, screen)

        self.push_screen(AskScreen("Compare with which checkpoint directory?", self.out, check), done)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _compare(self: GPTApp, path: str, prompt: str, screen: TextScreen) -> None:
        try:
            body = _compare_report(self.lens, Path(path), prompt, self.spec.sources, self.top_k)
        except Exception as exc:  # shown, never raised: the app keeps working
            body = Text(f"could not compare: {exc}", style="bold red")
        self.call_from_thread(self._show_page, screen, body)

    def _show_page(self: GPTApp, screen: TextScreen, body: Any) -> None:
        if screen in self.screen_stack:  # not closed while the work ran
            screen.update(body)

    # ---- 10. settings mid-run ---------------------------------------------------------------
    def action_set_lr(self: GPTApp) -> None:
        def check(value: str) -> str | None:
            try:
                return None if 0 < float(value) < 1 else "the learning rate must be between 0 and 1"
            except ValueError:
                return "not a number"

        def done(value: str | None) -> None:
            if value:
                self.client.send("set_lr", lr=float(value))
                self.spec.train["lr"] = float(value)
                self.notify(f"Peak learning rate {float(value):g} from the next step (no reset).")

        self.push_screen(
            AskScreen("Peak learning rate (applies now, no reset)", str(self.spec.train.get("lr", 1e-3)), check), done
        )

    def action_set_eval_interval(self: GPTApp) -> None:
        def check(value: str) -> str | None:
            return None if value.isdigit() else "a whole number of steps (0: never)"

        def done(value: str | None) -> None:
            if value:
                self.client.send("set_eval_interval", interval=int(value))
                self.spec.train["eval_interval"] = int(value)
                self.notify(f"Evaluating every {value} steps (no reset)." if int(value) else "Evaluation off.")

        current = str(self.spec.train.get("eval_interval", 250))
        self.push_screen(AskScreen("Evaluate every how many steps? (no reset)", current, check), done)

    # ---- 11. reproduce and export --------------------------------------------------------------
    def action_reproduce(self: GPTApp) -> None:
        from tui_gpt.lab import reproduce_command

        command = reproduce_command(asdict(self.spec))
        self.copy_to_clipboard(command)
        self.push_screen(TextScreen("Reproduce this run", Text(command + "\n\n(copied to the clipboard)")))

    def action_export(self: GPTApp) -> None:
        from tui_gpt.lab import examples_csv, history_csv

        folder = Path(self.out).expanduser().resolve().parent
        history = self.query_one("#training").curve.history()
        written = []
        try:
            path = folder / "tui-gpt-history.csv"
            path.write_text(history_csv(history), encoding="utf-8")
            written.append(path)
            if self.last_analysis is not None:
                rows, labels = self.last_analysis
                path = folder / "tui-gpt-examples.csv"
                path.write_text(examples_csv(rows, labels), encoding="utf-8")
                written.append(path)
            svg = self.save_screenshot(path=str(folder))
            written.append(Path(svg))
        except OSError as exc:
            self.notify(f"could not export to {folder}: {exc.strerror or exc}", severity="error")
            return
        self.notify("\n".join(shlex.quote(str(p)) for p in written), title="Exported")


def _stack(*parts: Any) -> Any:
    from rich.console import Group

    return Group(*parts)


def _step_report(app: Any, ev: ExampleStepped) -> Any:
    import math

    tok = app.lens.tokenizer if app.lens else None
    ids = app._step_ids
    head = Text()
    if tok is not None:
        head.append(f"{visible(tok.decode(ids[:-1]))} → ", style="dim")
        head.append(visible(tok.token_texts[ev.target]) + "\n\n", style="bold")
    head.append(f"p(target): {ev.p_before:.4f} → {ev.p_after:.4f}\n", style="bold")
    head.append(f"loss -log p: {-math.log(max(ev.p_before, 1e-12)):.3f} → {-math.log(max(ev.p_after, 1e-12)):.3f}\n\n")
    table = Table(title="top guesses before and after", expand=False)
    table.add_column("before")
    table.add_column("p", justify="right")
    table.add_column("after")
    table.add_column("p", justify="right")
    for (tb, pb), (ta, pa) in zip(ev.top_before, ev.top_after, strict=False):
        table.add_row(visible(tb), f"{pb:.3f}", visible(ta), f"{pa:.3f}")
    note = Text(
        "\nOne optimizer step nudged every weight toward this example; the run's step count is unchanged.", style="dim"
    )
    return _stack(head, table, note)


def _memo_report(app: Any, ev: Memorized) -> Any:
    tok = app.lens.tokenizer if app.lens else None
    out = Text()
    if tok is None:
        return out
    texts = tok.token_texts
    inside = [False] * len(ev.ids)
    for a, b in ev.spans:
        for i in range(a, b):
            inside[i] = True
    for i, t in enumerate(ev.ids):
        out.append(texts[t], style="bold black on yellow" if inside[i] else "")
    covered = sum(inside)
    spans = f"{len(ev.spans)} span{'' if len(ev.spans) == 1 else 's'}"
    summary = Text(
        f"\n\n{spans} copied verbatim from the training text (highlighted; at least {ev.min_len} "
        f"tokens each), covering {covered}/{len(ev.ids)} tokens ({covered / max(1, len(ev.ids)):.0%}).",
        style="bold",
    )
    return _stack(out, summary)


def _compare_report(lens: Any, path: Path, prompt: str, sources: list[str], k: int) -> Any:
    """Both models on the same prompt and the same validation text."""
    from tui_gpt.checkpoint import load_model
    from tui_gpt.corpus import load_corpus
    from tui_gpt.dataset import TokenData
    from tui_gpt.probe import analyze, validation_loss

    other, other_tok, _ = load_model(path)
    corpus = load_corpus(sources)
    models = [("this run", lens.model, lens.tokenizer), (str(path), other, other_tok)]
    analyses = [analyze(m, t, t.encode(prompt), k=k) for _, m, t in models]
    vals = [validation_loss(m, TokenData.build(corpus, t).val) for _, m, t in models]
    top = Table(title=f"next token after {prompt[-40:]!r}", expand=False)
    for name, _, t in models:
        top.add_column(f"{name} ({t.kind})")
        top.add_column("p", justify="right")
    for a, b in zip(analyses[0].prediction.guesses, analyses[1].prediction.guesses, strict=False):
        top.add_row(visible(a.text), f"{a.prob:.3f}", visible(b.text), f"{b.prob:.3f}")
    losses = Text(
        f"\nvalidation loss: this run {vals[0]:.3f} · {path.name} {vals[1]:.3f}"
        "  (fixed batches of this run's text; comparable when both use the same tokenizer kind)\n",
        style="bold",
    )
    parts: list[Any] = [top, losses]
    rows_a, rows_b = analyses[0].examples, analyses[1].examples
    same_tokens = lens.tokenizer.hf.to_str() == other_tok.hf.to_str()
    if rows_a and same_tokens and [a.target for a in rows_a] == [b.target for b in rows_b]:
        diff = Table(title="surprisal per token of the prompt (-log p)", expand=False)
        for col in ("token", "this run", path.name, "difference"):
            diff.add_column(col, justify="right")
        texts = lens.tokenizer.token_texts
        for a, b in zip(rows_a, rows_b, strict=True):
            diff.add_row(visible(texts[a.target]), f"{a.nll:.2f}", f"{b.nll:.2f}", f"{b.nll - a.nll:+.2f}")
        parts.append(diff)
    elif rows_a:
        parts.append(Text("the two tokenizers split the prompt differently: no per-token comparison", style="dim"))
    return _stack(*parts)
