"""The lab's engine modules: memorization, run hints, surprisal buckets, tokenizer and temperature tables, exports."""

from __future__ import annotations

import csv
import io
import math
import re
import shlex

import pytest
import torch

from tui_gpt.commands.cli import parser_train
from tui_gpt.engine.session import RunSpec
from tui_gpt.engine.tokenizer import TextTokenizer
from tui_gpt.engine.trainer import History, TrainConfig, TrainEvent
from tui_gpt.probes import memorization
from tui_gpt.probes.export import HISTORY_COLUMNS, examples_csv, history_csv
from tui_gpt.probes.hints import Hint, best_eval, run_hints
from tui_gpt.probes.memorization import NgramIndex, memorized_spans
from tui_gpt.probes.predict import Example, temperature_table
from tui_gpt.probes.surprisal import DEFAULT_RANK_EDGES, PALETTE, parse_edges, prob_bucket, rank_bucket
from tui_gpt.probes.tokenview import describe_ids, token_counts, train_tokenizers
from tui_gpt.settings import reproduce_command

# ---- memorization ---------------------------------------------------------------------------------------------


def _train_stream(n: int = 5000, seed: int = 0) -> list[int]:
    """Random ids 0..49; samples draw filler from 100..149, so filler never matches the text by chance."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50, (n,), generator=g).tolist()


def _filler(n: int, seed: int = 1) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 150, (n,), generator=g).tolist()


def test_planted_span_is_found_with_exact_boundaries():
    train = _train_stream()
    sample = _filler(60)
    sample[10:40] = train[1000:1030]
    assert memorized_spans(sample, train, 8) == [(10, 40)]
    assert memorized_spans(sample, torch.tensor(train), 8) == [(10, 40)]  # a tensor works like a list


def test_sample_not_in_text_gives_nothing():
    assert memorized_spans(_filler(200), _train_stream(), 4) == []


def test_spans_shorter_than_min_len_are_not_reported():
    train = _train_stream()
    sample = _filler(40)
    sample[5:12] = train[300:307]  # 7 tokens
    assert memorized_spans(sample, train, 8) == []
    assert memorized_spans(sample, train, 7) == [(5, 12)]


def test_two_separate_planted_spans_are_both_found():
    train = _train_stream()
    sample = _filler(100)
    sample[3:15] = train[10:22]
    sample[50:80] = train[4000:4030]
    index = NgramIndex(train, 6)
    assert index.spans(sample) == [(3, 15), (50, 80)]
    assert index.spans(_filler(100, seed=5)) == []  # one index, many samples


def test_overlapping_matches_merge_but_touching_ones_do_not():
    # [1..5] and [3..7] each occur; they overlap in the sample, so they make one span.
    assert memorized_spans([1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 0, 0, 3, 4, 5, 6, 7], 3) == [(0, 7)]
    # [1, 2, 3] and [4, 5, 6] occur apart: adjacent in the sample, but two matches.
    assert memorized_spans([1, 2, 3, 4, 5, 6], [1, 2, 3, 0, 4, 5, 6], 3) == [(0, 3), (3, 6)]


def test_hash_collisions_are_checked_against_the_text(monkeypatch):
    # Every window hashes alike: only the verbatim check can tell them apart.
    monkeypatch.setattr(memorization, "_window_keys", lambda x, n: torch.zeros(x.numel() - n + 1, dtype=torch.long))
    train = _train_stream(500)
    sample = _filler(30)
    sample[4:14] = train[200:210]
    assert memorized_spans(sample, train, 5) == [(4, 14)]


def test_edge_cases():
    assert memorized_spans([1, 2, 3], [1, 2], 3) == []  # text shorter than min_len
    assert memorized_spans([1, 2], [1, 2, 3], 3) == []  # sample shorter than min_len
    assert memorized_spans([5, 1, 2, 5], [1, 2], 2) == [(1, 3)]
    with pytest.raises(ValueError, match="min_len"):
        memorized_spans([1, 2], [1, 2], 1)


def test_a_million_token_text():
    g = torch.Generator().manual_seed(3)
    train = torch.randint(0, 500, (1_000_000,), generator=g)
    index = NgramIndex(train, 16)
    sample = _filler(300)
    sample[123:223] = train[777_000:777_100].tolist()
    assert index.spans(sample) == [(123, 223)]


# ---- hints ----------------------------------------------------------------------------------------------------

BASE = {"uniform": math.log(65), "unigram": 3.3, "bigram": 2.5}


def _history(loss: list[float], evals: list[tuple[float, float]] = ()) -> dict:
    """A History dict: `loss` at steps 1.., and (eval_train, eval_val) pairs every 10 steps."""
    return {
        "steps": list(range(1, len(loss) + 1)),
        "loss": loss,
        "lr": [1e-3] * len(loss),
        "eval_steps": [10 * i for i in range(len(evals))],
        "eval_train": [t for t, _ in evals],
        "eval_val": [v for _, v in evals],
    }


def kinds(hints: list[Hint]) -> list[str]:
    return [h.kind for h in hints]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_loss_is_an_error_and_the_only_hint(bad):
    hints = run_hints(_history([3.0] * 30 + [bad], [(2.0, 2.5), (1.8, 2.6), (1.5, 2.9)]), BASE)
    assert kinds(hints) == ["nan"]
    assert hints[0].severity == "error" and "--lr" in hints[0].text


def test_loss_above_uniform_after_the_first_steps_is_diverging():
    hints = run_hints(_history([5.0] * 100), BASE)
    assert kinds(hints) == ["diverging"]
    assert hints[0].severity == "error" and "--lr" in hints[0].text and f"{BASE['uniform']:.2f}" in hints[0].text
    # Early on, a loss above ln V is just the random start.
    assert "diverging" not in kinds(run_hints(_history([5.0] * 30), BASE))


def test_a_loss_that_rises_by_half_is_diverging():
    hints = run_hints(_history([2.0] * 40 + [3.2] * 20), BASE)
    assert kinds(hints) == ["diverging"]
    assert "2.00" in hints[0].text and "3.20" in hints[0].text
    assert "diverging" not in kinds(run_hints(_history([2.0] * 40 + [2.8] * 20), BASE))  # +40%


def test_above_unigram():
    hints = run_hints(_history([3.6] * 60), BASE)
    assert kinds(hints) == ["above_unigram"]
    assert hints[0].severity == "info" and "3.30" in hints[0].text and "common" in hints[0].text


def test_above_unigram_uses_the_smoothed_loss():
    # One noisy batch above the baseline does not count: the mean of the last 20 steps is below it.
    assert kinds(run_hints(_history([3.0] * 59 + [3.9]), BASE)) == ["ok"]


def test_below_bigram():
    hints = run_hints(_history([2.2] * 60), BASE)
    assert kinds(hints) == ["below_bigram"]
    assert hints[0].severity == "info" and "previous token" in hints[0].text


def test_overfitting():
    evals = [(2.0, 2.2), (1.8, 2.3), (1.6, 2.5)]
    hints = run_hints(_history([2.8] * 60, evals), BASE)
    assert kinds(hints) == ["overfitting"]
    assert hints[0].severity == "warn" and "--dropout" in hints[0].text


def test_overfitting_names_the_step_where_val_was_best():
    # Val bottoms out at the second evaluation (step 10), then rises while train falls.
    evals = [(3.0, 3.2), (2.4, 2.9), (2.0, 3.0), (1.6, 3.3)]
    hints = run_hints(_history([2.8] * 60, evals), BASE)
    assert kinds(hints) == ["overfitting"]
    assert hints[0].text.startswith("overfitting: val was best at step 10 (2.90) and is rising while train falls")
    # A pure function of the history: the same history, the same words; a NaN evaluation is never the best.
    assert run_hints(_history([2.8] * 60, evals), BASE) == hints
    assert best_eval([0, 10, 20], [math.nan, 3.1, 3.1]) == (10, 3.1)
    assert best_eval([], []) is None


def test_history_knows_its_best_evaluation():
    h = History()
    assert h.best_val() is None
    for step, val in ((0, 4.0), (250, 3.5), (500, 3.2), (750, 3.4)):
        h.add(TrainEvent(step, 3.0, 1e-3, 0.0, 0.0, val_loss=val, eval_train_loss=3.0))
    assert h.best_val() == (500, 3.2)
    assert not h.improved()  # the last evaluation (3.4) is worse than step 500's
    h.add(TrainEvent(1000, 3.0, 1e-3, 0.0, 0.0, val_loss=3.1, eval_train_loss=3.0))
    assert h.improved() and h.best_val() == (1000, 3.1)


@pytest.mark.parametrize(
    "evals",
    [
        [(1.50, 1.50), (1.48, 1.52), (1.46, 1.55)],  # val rising, but within 0.1 of train
        [(2.0, 2.2), (2.1, 2.3), (2.2, 2.5)],  # both rising: not overfitting
        [(2.0, 2.5), (1.8, 2.3), (1.6, 2.2)],  # both falling
        [(1.8, 2.3), (1.6, 2.5)],  # fewer evaluations than the window
        [(2.0, 2.2), (math.nan, 2.3), (math.nan, 2.5)],  # no eval train loss recorded
    ],
)
def test_no_overfitting_warning(evals):
    assert "overfitting" not in kinds(run_hints(_history([2.8] * 60, evals), BASE))


def test_ok_and_empty():
    hints = run_hints(_history([2.8] * 60, [(3.0, 3.1), (2.9, 3.0), (2.8, 2.9)]), BASE)
    assert kinds(hints) == ["ok"] and hints[0].severity == "info"
    assert run_hints(History().to_dict(), BASE) == []


def test_hints_read_a_real_history():
    h = History()
    h.add(TrainEvent(0, 4.2, 1e-3, 0.0, 0.0, val_loss=4.2, eval_train_loss=4.2))  # the evaluation before step 1
    for step in range(1, 61):
        h.add(TrainEvent(step, 2.2, 1e-3, 1000.0, step * 0.01))
    assert kinds(run_hints(h.to_dict(), BASE)) == ["below_bigram"]
    with pytest.raises(ValueError, match="window"):
        run_hints(h.to_dict(), BASE, window=1)


# ---- surprisal buckets ----------------------------------------------------------------------------------------


def test_rank_bucket():
    ranks = [1, 2, 3, 4, 10, 11, 100, 101, 10**6]
    assert [rank_bucket(r) for r in ranks] == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [rank_bucket(r, (1, 5, 20, 200)) for r in (1, 5, 6, 20, 21, 200, 201)] == [0, 1, 2, 2, 3, 3, 4]


def test_prob_bucket():
    ps = [1.0, 0.5, 0.49, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0, math.nan]
    assert [prob_bucket(p) for p in ps] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4]


def test_parse_edges():
    assert parse_edges("1, 5, 20, 200") == (1, 5, 20, 200)
    assert parse_edges(" 1 5,20 ,200 ") == (1, 5, 20, 200)
    assert parse_edges("2, 7", count=None) == (2, 7)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "whole numbers"),
        ("1, 2, x, 4", "'x' is not a whole number"),
        ("1, 2.5, 3, 4", "'2.5' is not a whole number"),
        ("1, 3, 3, 4", "must increase"),
        ("5, 3, 10, 100", "must increase"),
        ("0, 3, 10, 100", "positive"),
        ("-1, 3, 10, 100", "positive"),
        ("1, 3, 10", "exactly 4"),
    ],
)
def test_parse_edges_rejects(text, says):
    with pytest.raises(ValueError) as err:
        parse_edges(text)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_palette():
    assert len(PALETTE) == len(DEFAULT_RANK_EDGES) + 1 == 5  # one colour per bucket
    assert len(set(PALETTE)) == 5
    assert all(re.fullmatch(r"#[0-9A-Fa-f]{6}", c) for c in PALETTE)


# ---- tokenizer comparison -------------------------------------------------------------------------------------

CORPUS = [
    "The fox ran to the river. The dog sat by the door.\n"
    "The hen found a seed and planted it, and the wheat grew tall.\n" * 8
]
ENGLISH = "The dog ran to the door and the hen sat by the river."


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, TextTokenizer]:
    return train_tokenizers(CORPUS)


def test_token_counts():
    counts = token_counts(ENGLISH, CORPUS)
    assert set(counts) == {"char", "bpe", "word"}
    assert counts["char"] == len(ENGLISH)
    assert counts["bpe"] < counts["char"] and counts["word"] < counts["char"]


def test_token_counts_vocab_sizes():
    small = token_counts(ENGLISH, CORPUS, {"bpe": 257})  # bytes only: no merges
    assert small["bpe"] == len(ENGLISH.encode())


def test_emoji_in_ascii_bpe_is_marked_as_fragments(tokenizers):
    tok = tokenizers["bpe"]
    ids = tok.encode("the 🙂")
    infos = describe_ids(tok, ids)
    frags = [t for t in infos if t.fragment]
    assert len(frags) == len("🙂".encode())  # never seen: one token per byte
    assert all(t.text.startswith("\\x") for t in frags)
    assert not any(t.fragment for t in infos if t not in frags)
    assert [t.id for t in infos] == ids
    assert tok.to_bytes(t.id for t in infos).decode() == "the 🙂"


def test_describe_ids_special_and_whole_tokens(tokenizers):
    for tok in tokenizers.values():
        infos = describe_ids(tok, [tok.eot_id, *tok.encode("the")])
        assert infos[0].special and not infos[0].fragment
        assert not any(t.special or t.fragment for t in infos[1:])
        assert "".join(t.text for t in infos[1:]) == "the"


def test_a_literal_backslash_x_is_not_a_fragment():
    text = r"escape \xff here "
    tok = TextTokenizer.train("bpe", [text * 20])
    infos = describe_ids(tok, tok.encode(r"\xff"))
    assert "".join(t.text for t in infos) == r"\xff"
    assert not any(t.fragment for t in infos)


# ---- temperature ----------------------------------------------------------------------------------------------

LOGITS = torch.tensor([2.0, -1.0, 0.5, 3.0, 0.5])


def test_temperature_one_is_the_softmax():
    rows = temperature_table(LOGITS, 1.0, k=5)
    assert [r.id for r in rows] == [3, 0, 2, 4, 1]  # by logit; the tie goes to the lower id
    soft = torch.softmax(LOGITS.double(), dim=-1)
    for r in rows:
        assert r.logit == LOGITS[r.id].item() and r.scaled == r.logit
        assert r.prob == pytest.approx(soft[r.id].item(), rel=1e-12)
    assert sum(r.prob for r in rows) == pytest.approx(1.0, abs=1e-12)


def test_temperature_scales_logits_and_probs_sum_to_one():
    rows = temperature_table(LOGITS, 2.0, k=100)  # k beyond V: every token
    assert len(rows) == 5
    assert [r.scaled for r in rows] == [r.logit / 2.0 for r in rows]
    assert sum(r.prob for r in rows) == pytest.approx(1.0, abs=1e-12)
    assert [r.id for r in temperature_table(LOGITS, 2.0, k=2)] == [3, 0]


def test_higher_temperature_is_flatter():
    top = [temperature_table(LOGITS, t, k=1)[0].prob for t in (0.25, 0.5, 1.0, 2.0, 8.0)]
    assert top == sorted(top, reverse=True) and len(set(top)) == 5
    assert temperature_table(LOGITS, 0.0, k=1)[0].prob == pytest.approx(1.0)  # 0 is greedy
    with pytest.raises(ValueError, match="logits"):
        temperature_table(LOGITS[None, :], 1.0, k=1)


# ---- reproduce and export -------------------------------------------------------------------------------------


def _parse(cmd: str) -> RunSpec:
    argv = shlex.split(cmd, comments=True)
    assert argv[:2] == ["tui-gpt", "train"]
    return RunSpec.from_args(parser_train().parse_args(argv[2:]))


def test_reproduce_command_round_trips():
    spec = RunSpec(
        sources=["fables", "my notes/it's.txt"],
        tokenizer="bpe",
        vocab_size=300,
        n_layer=2,
        n_head=2,
        n_embd=64,
        block_size=32,
        dropout=0.15,
        train={
            "batch_size": 8,
            "lr": 3e-4,
            "warmup_steps": 10,
            "eval_interval": 50,
            "eval_iters": 5,
            "seed": 7,
            "dtype": "float32",
            "device": "cpu",
            "decay_steps": 500,
        },
    )
    cmd = reproduce_command(spec)
    assert "#" not in cmd
    assert _parse(cmd) == spec


def test_reproduce_command_defaults_and_omissions():
    spec = RunSpec(train={"dtype": "auto", "device": "auto"})
    cmd = reproduce_command(spec)
    for opt in ("--vocab-size", "--dtype", "--device", "--resume", "--steps"):
        assert opt not in cmd
    for opt in ("--tokenizer", "--n-layer", "--n-head", "--n-embd", "--block-size", "--dropout"):
        assert opt in cmd  # the model is always spelled out
    back = _parse(cmd)
    assert (back.tokenizer, back.n_layer, back.n_embd, back.dropout) == ("char", 4, 128, 0.0)
    defaults = TrainConfig().to_dict()
    assert all(defaults[k] == v for k, v in back.train.to_dict().items())


def test_reproduce_command_resume_odd_sources_and_unsettable():
    spec = RunSpec(sources=["-dashed.txt", "b c.txt"], causal=False, resume="runs/a b", train={"weight_decay": 0.05})
    cmd = reproduce_command(spec)
    assert cmd.endswith("# not settable from the command line: weight_decay=0.05")
    back = _parse(cmd)
    assert back.sources == ["-dashed.txt", "b c.txt"] and back.resume == "runs/a b"
    assert back.causal is False  # --no-causal


def _read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_history_csv():
    h = History()
    h.add(TrainEvent(0, 4.25, 1e-4, 0.0, 0.0, val_loss=4.3, eval_train_loss=4.25))
    for step in range(1, 5):
        ev = TrainEvent(step, 4.0 - step / 3, 1e-3 * step, 1000.0, step * 0.1)
        if step in (2, 4):
            ev.val_loss, ev.eval_train_loss = 3.5 - step / 10, 3.4 - step / 10
        h.add(ev)
    text = history_csv(h.to_dict())
    assert text.splitlines()[0] == "step,train_loss,lr,val_loss,eval_train_loss," + ",".join(HISTORY_COLUMNS[5:])
    rows = _read(text)
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["train_loss"] == rows[0]["lr"] == ""  # step 0 is an evaluation only
    assert float(rows[0]["val_loss"]) == 4.3 and float(rows[0]["eval_train_loss"]) == 4.25
    assert [float(r["train_loss"]) for r in rows[1:]] == h.loss  # exact: floats written in full
    assert [float(r["lr"]) for r in rows[1:]] == h.lr
    assert [r["val_loss"] for r in rows[1:]] == ["", repr(h.eval_val[1]), "", repr(h.eval_val[2])]
    assert [r["eval_train_loss"] for r in rows[1:]] == ["", repr(h.eval_train[1]), "", repr(h.eval_train[2])]


def test_history_csv_blank_eval_train():
    h = History()
    h.add(TrainEvent(1, 3.0, 1e-3, 1.0, 1.0, val_loss=3.1))  # an evaluation without its train loss
    rows = _read(history_csv(h.to_dict()))
    blank = dict.fromkeys(HISTORY_COLUMNS[5:], "")  # no bytes per token known, no head reading
    assert rows == [
        {"step": "1", "train_loss": "3.0", "lr": "0.001", "val_loss": "3.1", "eval_train_loss": "", **blank}
    ]


def test_examples_csv():
    labels = ["Th", "e", ",", ' "x"', "\n", "\\xf0"]
    rows = [Example(t, 10 + t, 0.5 / t, -math.log(0.5 / t), t) for t in range(1, 6)]
    back = _read(examples_csv(rows, labels))
    assert list(back[0]) == ["position", "prefix", "target", "p", "neg_log_p", "rank"]
    assert len(back) == 5
    for r, b in zip(rows, back, strict=True):
        assert int(b["position"]) == r.position and int(b["rank"]) == r.rank
        assert b["prefix"] == "".join(labels[: r.position]) and b["target"] == labels[r.position]
        assert float(b["p"]) == r.prob and float(b["neg_log_p"]) == r.nll
    with pytest.raises(ValueError, match="labels"):
        examples_csv(rows, labels[:3])


# ---- one source for the run's state (#24) ---------------------------------------------------


def test_lab_commands_change_the_one_settings_object_and_report_it(fables_run):
    from tui_gpt.link.protocol import SetCausal, SetEvalInterval, SetLr
    from tui_gpt.link.worker import LabCommands

    lab = LabCommands(fables_run)
    tr = fables_run.trainer
    assert fables_run.spec.train is tr.config  # shared, not copied
    lab.handle(SetLr(1e-4))
    lab.handle(SetEvalInterval(7))
    lab.handle(SetCausal(False))
    assert (tr.config.lr, tr.config.eval_interval, tr.model.config.causal) == (1e-4, 7, False)
    reported = lab.spec
    assert (reported.train.lr, reported.train.eval_interval, reported.causal) == (1e-4, 7, False)
    assert reported.train is not tr.config  # a copy to send: a later change cannot race the queue's pickling


def test_a_resumed_run_reports_the_checkpoints_causal_flag_and_settings(make_spec, tmp_path):
    from tui_gpt.engine.session import open_run
    from tui_gpt.link.worker import describe_run

    run = open_run(make_spec(causal=False, lr=2e-3))
    out = run.save(tmp_path / "ckpt")
    resumed = open_run(RunSpec(resume=str(out)))  # typed nothing: causal and lr take their defaults
    spec = describe_run(resumed).spec
    assert spec.causal is False and spec.train.lr == 2e-3


# ---- compare by word (#28): words are text, so they line up across tokenizers --------------------------------


def test_compare_by_word_lines_up_across_tokenizers(make_spec, tmp_path):
    from tui_gpt.engine.session import open_run
    from tui_gpt.probes.compare import compare

    char = open_run(make_spec(tokenizer="char", block_size=32))
    bpe = open_run(make_spec(tokenizer="bpe", block_size=32))
    for run in (char, bpe):
        for _ in run.trainer.run(steps=10):
            pass
    path = bpe.save(tmp_path / "bpe")
    prompt = "The quick brown fox"
    c = compare(char.trainer.model.eval(), char.tokenizer, path, prompt, ["fables"], k=3)
    assert not c.same_tokens  # no per-token rows: the tokens differ
    pairs = c.word_pairs()
    assert [(a.text, b.text) for a, b in pairs] == [(w, w) for w in (" quick", " brown", " fox")]
    for side, words in ((c.this, [a for a, _ in pairs]), (c.other, [b for _, b in pairs])):
        nll = {e.position: e.nll for e in side.analysis.examples}
        for w in words:  # each side's -log p(word | prefix): the sum of its own tokens'
            assert w.nll == pytest.approx(sum(nll[t] for t in range(w.first, w.first + w.tokens)), abs=1e-9)
    assert [a.tokens for a, _ in pairs] == [6, 6, 4]  # char: one token a letter, the space included
    assert any(a.nll != pytest.approx(b.nll) for a, b in pairs)  # two models: two readings
