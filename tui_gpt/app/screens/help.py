"""The help screen: the three ideas behind a GPT, and the pane that shows each one."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from tui_gpt.app import keymap
from tui_gpt.app.keymap import app_keys, help_table, key_of

TEMPLATE = """\
# How a GPT learns — and where to see it

## 1. Every prefix is a training example
A text is not one example but many: `The -> quick`, `The quick -> brown`,
`The quick brown -> fox`, … `… over the lazy -> dog`. Each prefix is an input, and what
follows it is the target. **See it in _Training examples_**: one row per prefix, with the
target, by word or (`{words}`) by token, which is what the model really reads.

## 2. The loss is the cross-entropy of the true next token
For each example the model gives every token a probability. The loss of that example is
`-log p(target)`: 0 when the model is sure and right, large when it is surprised. The
training loss is the mean over all examples. **See it in _Training examples_** (the
`-log p` column and its mean, named as the loss), **in _Next word_ and _Next token_**
(the probabilities after your prompt), and **in _Training_** (the mean over random batches, falling as it
learns). The `uniform` line is a model that knows nothing (`ln V`, uniform over the
vocabulary); the `bigram` line knows only the previous token.

## 3. The causal mask keeps a position from seeing later ones
When the model reads `The quick brown`, the position of `quick` may attend to `The` and
itself, never to `brown`: otherwise training would be cheating, since the target is the
next token. **See it in _Attention_**: the dotted cells above the diagonal are masked;
press `v` there for the mask alone and for all heads of a layer.

## The mask experiment ({mask})
Switch the causal mask off and every position can attend to the tokens after it,
including the very token it is asked to predict. The train loss collapses towards zero:
the model learns to copy the answer from one position ahead instead of predicting it.
But a real continuation has no future to copy, so greedy generation (the grey line under
the prompt) turns to nonsense, and the val loss, measured with the mask back on, is worse
than before. This is the bug behind real causal-mask leaks in GPT code: a loss that looks
too good to be true. Press {mask} again to switch the mask back on.

## Overfitting on purpose ({overfit})
Your run is saved, and a model of the same size trains from scratch on one fable alone:
about 700 tokens. The train loss falls towards zero, but the val loss (the fable's last
lines, never trained on) soon stops falling and rises: the model has learned this one
text by heart and cannot guess a sentence it has not seen. That gap is overfitting; more
text, dropout or a smaller model close it. The hints under the chart say so as it
happens. Press {overfit} again to go back to your run, resumed from its save.

## Heads that copy ({heads})
Some attention heads learn a job you can name. A *previous-token* head attends from each
token to the one just before it. An *induction* head looks back for the earlier place where
the current token occurred and attends to the token that came after it, so it can copy:
after `A B … A` it predicts `B`. The trainer scores every head at regular steps, on a
random sequence repeated twice. The heads view shows the scores as two heatmaps (layers
down, heads across), and the best induction score and the loss on the repeat over training.
When an induction head forms, its score jumps and the loss on the repeated half falls in
the same few hundred steps: the chart marks that phase change and says which head it was.
Press {circuits} to watch one form on purpose: your run is saved, a 2-layer model trains
from scratch on lines of a random string repeated (only copying from the context predicts
them) with the heads view open, and {circuits} again goes back to your run.

## Next word
Type the seed sentence word by word, `The quick brown fox jumps over the lazy dog`, and
watch _Next word_: after each space it lists the words the model expects, with their
probabilities. Is the true next word there, and at what rank? Early in training it is
not; as the loss falls, `dog` climbs the list after `the lazy`. A model that reads
characters or subwords still predicts words: p(word) is the product of its tokens'
probabilities, times the probability that a new word starts after it. Its `-log p` is the
sum of its tokens' losses: the loss per word is the loss per token times tokens per word.

## The lab
| key | command | what it does |
|---|---|---|
{lab_keys}

The command palette (`{palette}`) also sets the learning rate and the evaluation interval
mid-run, shows the command that reproduces the run, and exports the loss history and the
examples as CSV and the screen as SVG.

## Keys
Type to edit the prompt: the bars follow every key.

| key | command | what it does |
|---|---|---|
{keys}
{panes}"""
TABLE = """
### {name}
| key | command | what it does |
|---|---|---|
{rows}
"""
HELP = TEMPLATE.format(
    words=key_of("words"),
    mask=key_of("lab_mask"),
    overfit=key_of("lab_overfit"),
    heads=key_of("lab_heads"),
    circuits=key_of("lab_circuits"),
    palette=keymap.TEXTUAL[0].shown_key,
    lab_keys=help_table(app_keys(lab=True)),
    keys=help_table(keymap.TEXTUAL + app_keys(lab=False)),
    panes="".join(TABLE.format(name=pane.name, rows=help_table(pane.rows)) for pane in keymap.PANES),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = keymap.bindings_of(keymap.HELP)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP)
