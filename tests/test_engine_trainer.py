"""The training loop: learning-rate schedule, evaluation, history, and a model that learns."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tui_gpt.engine.dataset import ids
from tui_gpt.engine.session import open_run
from tui_gpt.engine.trainer import History, TrainConfig, TrainEvent, pick_device, resolve_dtype
from tui_gpt.probes.predict import baselines


def test_lr_warms_up_then_decays_to_min_lr(make_spec):
    run = open_run(make_spec(lr=1e-3, min_lr=2e-4, warmup_steps=10, decay_steps=50))
    tr = run.trainer
    lrs = [tr.lr_at(s) for s in range(70)]
    warm = lrs[:11]
    assert all(a < b for a, b in itertools.pairwise(warm)), "warmup must rise"
    assert lrs[0] > 0
    assert lrs[10] == pytest.approx(1e-3)  # the peak, at the end of warmup
    decay = lrs[10:51]
    assert all(a > b for a, b in itertools.pairwise(decay)), "cosine must fall"
    assert lrs[30] == pytest.approx((1e-3 + 2e-4) / 2)  # halfway down the cosine
    assert lrs[50:] == [pytest.approx(2e-4)] * 20
    assert max(lrs) == pytest.approx(1e-3)


def test_a_constant_schedule_holds_the_peak_after_warmup(make_spec):
    """The app's open-ended run: no decay towards a step it never means to reach."""
    tr = open_run(make_spec(lr=1e-3, warmup_steps=10, decay_steps=50, schedule="constant")).trainer
    lrs = [tr.lr_at(s) for s in range(200)]
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))
    assert lrs[10:] == [pytest.approx(1e-3)] * 190


def test_the_app_defaults_to_a_constant_schedule_and_train_to_cosine():
    from tui_gpt.commands.cli import parser_app, parser_train
    from tui_gpt.settings import RunSpec

    assert RunSpec.from_args(parser_app().parse_args([]), app=True).train.schedule == "constant"
    assert RunSpec.from_args(parser_train().parse_args([])).train.schedule == "cosine"
    typed = parser_app().parse_args(["--schedule", "cosine"])
    assert RunSpec.from_args(typed, app=True).train.schedule == "cosine"


def test_min_lr_defaults_to_a_tenth(make_spec):
    tr = open_run(make_spec(lr=3e-3, min_lr=None, warmup_steps=0, decay_steps=5)).trainer
    assert tr.lr_at(0) == pytest.approx(3e-3)
    assert tr.lr_at(5) == pytest.approx(3e-4)
    assert tr.lr_at(1000) == pytest.approx(3e-4)


def test_the_optimizer_follows_the_schedule(make_spec):
    tr = open_run(make_spec(lr=1e-3, warmup_steps=3, decay_steps=8)).trainer
    for ev in tr.run(steps=10):
        assert ev.lr == tr.lr_at(ev.step - 1)
        assert all(g["lr"] == ev.lr for g in tr.optimizer.param_groups)
    tr.set_lr(5e-4)
    assert tr.lr_at(3) == pytest.approx(5e-4)


def test_a_model_that_learns_the_fables(make_spec):
    run = open_run(make_spec(n_embd=32, block_size=32, batch_size=8, warmup_steps=5, decay_steps=100, eval_iters=5))
    tr = run.trainer
    b = baselines(run.data.train, run.data.val, run.tokenizer.vocab_size)
    before = tr.evaluate()
    losses = [ev.loss for ev in tr.run(steps=100)]
    after = tr.evaluate()
    assert before["val"] == pytest.approx(b.uniform, abs=0.15)  # a fresh model knows nothing
    assert after["val"] < before["val"] - 0.7
    assert after["train"] < before["train"] - 0.7
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    assert all(math.isfinite(x) for x in losses)


def test_run_evaluates_and_records_history(make_spec):
    tr = open_run(make_spec(eval_interval=4)).trainer
    events = list(tr.run(steps=10))
    assert [e.step for e in events] == list(range(11))
    evals = [e.step for e in events if e.val_loss is not None]
    assert evals == [0, 4, 8, 10]  # before the first step, every 4, and at the end
    assert all(e.eval_train_loss is not None for e in events if e.val_loss is not None)
    h = tr.history
    assert h.steps == list(range(1, 11))
    assert h.loss == [e.loss for e in events[1:]]
    assert h.eval_steps == evals
    assert History.from_dict(h.to_dict()) == h
    assert tr.step == 10 and tr.elapsed > 0


def test_evaluate_does_not_disturb_training(make_spec):
    spec = make_spec()
    a = open_run(spec).trainer
    b = open_run(spec).trainer
    losses_a = [e.loss for e in a.run(steps=6)]
    losses_b = []
    for _ in range(6):
        b.evaluate(3)
        losses_b.append(b.train_step().loss)
    assert losses_a == losses_b
    assert b.evaluate(3) == b.evaluate(3)  # same step, same batches


def test_seconds_limit_stops_the_run(make_spec):
    tr = open_run(make_spec()).trainer
    events = list(tr.run(seconds=0.0))
    assert events == [] and tr.step == 0
    events = list(tr.run(steps=1_000_000, seconds=0.2))
    assert 0 < tr.step < 1_000_000


def test_same_seed_same_run_other_seed_other_run(make_spec):
    a = [e.loss for e in open_run(make_spec(seed=1)).trainer.run(steps=5)]
    b = [e.loss for e in open_run(make_spec(seed=1)).trainer.run(steps=5)]
    c = [e.loss for e in open_run(make_spec(seed=2)).trainer.run(steps=5)]
    assert a == b
    assert a != c


def test_train_config_round_trip_ignores_unknown_keys():
    c = TrainConfig(lr=2e-3, batch_size=3)
    assert TrainConfig.from_dict({**c.to_dict(), "from_the_future": 1}) == c


def test_device_and_dtype_resolution():
    assert pick_device("cpu") == torch.device("cpu")
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)


def test_history_keeps_nan_for_missing_eval_train():
    h = History()
    h.add(TrainEvent(step=0, loss=4.0, lr=1e-3, tokens_per_s=0.0, elapsed=0.0, val_loss=4.1))
    h.add(TrainEvent(step=1, loss=3.9, lr=1e-3, tokens_per_s=1.0, elapsed=0.1))
    assert h.steps == [1] and h.eval_steps == [0]
    assert math.isnan(h.eval_train[0])


def test_split_loss_scores_every_window_once(make_spec):
    tr = open_run(make_spec()).trainer
    for _ in tr.run(steps=20):
        pass
    val = ids(tr.data.split("val"))  # the stream as int64 (it is stored as a uint16 memory map)
    T = tr.model.config.block_size
    with torch.no_grad():
        losses = [
            tr.model(val[i : i + T][None], val[i + 1 : i + T + 1][None])[1].item() for i in range(0, len(val) - T, T)
        ]
    assert tr.split_loss("val", batch_size=3) == pytest.approx(sum(losses) / len(losses), abs=1e-5)
    assert tr.evaluate(200)["val"] == pytest.approx(tr.split_loss("val"), abs=0.05)  # what evaluate samples


def test_dropout_follows_the_size_of_the_text():
    from tui_gpt.settings import dropout_for

    assert dropout_for(30_000, 860_000)[0] == 0.2  # the fables alone: small
    assert dropout_for(500_000, 860_000)[0] == 0.1  # a megabyte of stories: medium
    assert dropout_for(10_000_000, 860_000)[0] == 0.0  # plenty of text: none
    assert "small text" in dropout_for(30_000, 860_000)[1]


def test_the_app_chooses_dropout_when_the_run_opens_and_an_option_wins(make_spec):
    from tui_gpt.commands.cli import parser_app, parser_train
    from tui_gpt.settings import RunSpec

    assert RunSpec.from_args(parser_app().parse_args([]), app=True).dropout is None
    assert RunSpec.from_args(parser_app().parse_args(["--dropout", "0.05"]), app=True).dropout == 0.05
    assert RunSpec.from_args(parser_train().parse_args([])).dropout == 0.0
    app_size = {"n_layer": 4, "n_head": 4, "n_embd": 128}  # the fables: 0.08 tokens a parameter
    run = open_run(make_spec(dropout=None, **app_size))
    assert run.spec.dropout == run.trainer.model.config.dropout == 0.2
    assert run.spec.dropout_note.startswith("small text")
    assert open_run(make_spec(dropout=0.0, **app_size)).trainer.model.config.dropout == 0.0
    assert open_run(make_spec(dropout=None)).spec.dropout == 0.0  # the tiny test model: plenty of text for it


@pytest.mark.parametrize("shape", [(512, 64, 4, 4, 128, True), (100, 16, 1, 2, 16, False), (65, 32, 2, 2, 48, True)])
def test_the_config_counts_the_parameters_the_model_has(shape):
    from tui_gpt.engine.model import GPT, GPTConfig

    vocab, block, layers, heads, width, bias = shape
    config = GPTConfig(vocab, block, layers, heads, width, bias=bias)
    assert config.num_params() == GPT(config).num_params()


def test_evaluations_draw_the_same_batches_so_they_differ_only_by_the_model(make_spec):
    tr = open_run(make_spec()).trainer
    first = tr.evaluate()
    tr.step += 250  # a later evaluation of the same weights
    assert tr.evaluate() == first


def test_a_rise_of_val_within_noise_is_not_overfitting():
    from tui_gpt.probes.hints import run_hints

    def kinds(vals: list[float]) -> set[str]:
        history = {"steps": [], "loss": [], "eval_steps": [0, 250, 500], "eval_train": [2.5, 2.4, 2.3]}
        return {h.kind for h in run_hints({**history, "eval_val": vals}, {})}

    assert "overfitting" not in kinds([2.80, 2.79, 2.81])  # up 0.4%: evaluation and SGD noise
    assert "overfitting" not in kinds([2.78, 2.80, 2.83])  # up 1.8%, but within 5% of its best: a constant lr's swing
    assert "overfitting" in kinds([2.80, 2.90, 3.00])  # 7% above its best, and rising while train falls
