"""From settings to a ready trainer: load the text, train the tokenizer, build or resume the model.

The command line, the benchmark and the app's trainer process all start runs here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tui_gpt.errors import TuiGptError, checked_path
from tui_gpt.settings import RunSpec, dropout_for, spec_problem

if TYPE_CHECKING:  # the app imports RunSpec before first paint: keep it light
    from tui_gpt.engine.checkpoint import CorpusInfo
    from tui_gpt.engine.corpus import Corpus
    from tui_gpt.engine.dataset import TokenData
    from tui_gpt.engine.tokenizer import TextTokenizer
    from tui_gpt.engine.trainer import Trainer

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class LoadedRun:
    spec: RunSpec
    corpus: Corpus
    tokenizer: TextTokenizer
    data: TokenData
    trainer: Trainer
    memory: str = ""  # the memory estimate of a fine-tuning run, shown before it starts
    # This run's own id: in its record and in every checkpoint it saves (a resume is a new run, with a new id)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.trainer.watch_heads(self.tokenizer)  # the live head scores' probe draws from its vocabulary

    def corpus_info(self) -> CorpusInfo:
        from tui_gpt.engine.checkpoint import corpus_info

        return corpus_info(self.corpus, self.spec.sources)

    def save(self, out: str | Path) -> Path:
        from tui_gpt.engine.checkpoint import save_checkpoint

        return save_checkpoint(Path(out), self.trainer, self.tokenizer, self.corpus_info(), self.run_id)

    def save_best(self, out: str | Path, evaluated: bool) -> Path | None:
        """--keep best: after an evaluation that beat every earlier one, save the weights to `out`/best too.

        Its path if saved; None if the run does not keep its best, or this step is not a new best.
        The first evaluation, before any step, is never kept: those weights are random.
        """
        from tui_gpt.engine.savedir import BEST

        tr = self.trainer
        if tr.config.keep != "best" or not evaluated or tr.step == 0 or not tr.history.improved():
            return None
        return self.save(Path(out) / BEST)


def preflight(spec: RunSpec) -> None:
    """Raise the one-line error that opening `spec` would, without building anything (or importing torch)."""
    check_spec(spec)
    if spec.model:
        from tui_gpt.engine.hf import find_model

        find_model(spec.model)
    if spec.resume:
        from tui_gpt.engine.checkpoint import read_config_json

        read_config_json(Path(spec.resume))
    elif spec.sources:
        from tui_gpt.engine.corpus import load_corpus

        if _small(spec.sources):  # a big text is read by the trainer, with progress: no blank wait here
            load_corpus(spec.sources)


def check_spec(spec: RunSpec) -> None:
    """Refuse, before any work, a setting that would leave a checkpoint nothing can load, or a device not here."""
    if why := spec_problem(spec):
        raise TuiGptError(why)
    check_device(spec.train.device)


def check_device(name: str) -> None:
    """A device this torch cannot train on is a one-line error; torch is imported only for one named."""
    if name not in ("auto", "cpu"):
        from tui_gpt.engine.devices import check_device as check

        check(name)


PREFLIGHT_BYTES = 20 << 20  # text this small is read through once before the app opens


def _small(sources: list[str]) -> bool:
    total = 0
    for src in sources:
        with contextlib.suppress(OSError, TuiGptError):  # load_corpus says what is wrong with it
            path = checked_path(src)
            total += path.stat().st_size if path.is_file() else 0
    return total <= PREFLIGHT_BYTES


def open_run(spec: RunSpec, progress: Progress | None = None) -> LoadedRun:
    """Load the corpus and build a trainer for `spec`, resuming from `spec.resume` if set."""
    from tui_gpt.engine.corpus import load_corpus
    from tui_gpt.engine.dataset import TokenData
    from tui_gpt.engine.model import GPTConfig
    from tui_gpt.engine.tokenizer import TextTokenizer
    from tui_gpt.engine.trainer import Trainer

    check_spec(spec)
    sources = spec.sources
    if spec.resume:
        from tui_gpt.engine.checkpoint import load_tokenizer, load_trainer, read_config_json, resolve
        from tui_gpt.settings import is_builtin

        ckpt = resolve(Path(spec.resume))
        cfg = read_config_json(ckpt)  # every value checked, corpus.sources a list of names
        if not sources:
            sources = (cfg.get("corpus") or {}).get("sources", [])
            for src in sources:
                if not is_builtin(src) and not Path(src).exists():
                    raise TuiGptError(
                        f"{ckpt / 'config.json'}: the training text {src} is gone; pass it again: "
                        f"tui-gpt train TEXT --resume {spec.resume}"
                    )
        tokenizer = load_tokenizer(ckpt, cfg["model"]["vocab_size"])  # before the text: cheap checks first
        corpus = load_corpus(sources, _step(progress, "reading text"))
        data = TokenData.build(corpus, tokenizer, _step(progress, "tokenizing"))
        trainer = load_trainer(ckpt, data, device=spec.train.device, cfg=cfg)
        _apply_given(trainer, spec, tokenizer)
        spec = replace(spec, sources=sources)
        return LoadedRun(spec, corpus, tokenizer, data, trainer)
    corpus = load_corpus(sources, _step(progress, "reading text"))
    if spec.model:
        return _open_pretrained(spec, spec.model, corpus, progress)
    if progress:
        progress("training tokenizer", 0, 1)
    # BPE and word learn from a bounded sample; the whole alphabet keeps every character known.
    texts = [] if spec.tokenizer == "char" else corpus.sample_texts()
    tokenizer = TextTokenizer.train(spec.tokenizer, texts, spec.vocab_size, alphabet=corpus.alphabet)
    if progress:
        progress("training tokenizer", 1, 1)
    data = TokenData.build(corpus, tokenizer, _step(progress, "tokenizing"))
    mconf = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=spec.block_size,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        n_embd=spec.n_embd,
        dropout=spec.dropout or 0.0,
        causal=spec.causal,
    )
    if spec.dropout is None:  # the app's default: by the size of the text
        mconf.dropout, note = dropout_for(len(data.train), mconf.num_params())
        spec = replace(spec, dropout=mconf.dropout, dropout_note=note)
    trainer = Trainer(mconf, replace(spec.train), data)
    return LoadedRun(spec, corpus, tokenizer, data, trainer)


# Train settings a resume may change; the rest of a checkpoint's settings are its own.
RESUMABLE = ("lr", "batch_size", "eval_interval", "head_interval", "keep")
WHERE = ("device",)  # where a run goes on is the user's choice, whatever wrote the checkpoint


def _apply_given(trainer: Trainer, spec: RunSpec, tokenizer: TextTokenizer) -> None:
    """Apply the settings the user passed with --resume, and record the change in the history.

    An option a resumed run cannot take (a model size, the tokenizer, ...) is refused when it
    differs from the checkpoint's, never ignored.
    """
    from tui_gpt.settings import OPTIONS

    run_has = {**vars(trainer.model.config), **vars(trainer.config), "tokenizer": tokenizer.kind}
    fixed = []
    for opt in OPTIONS:
        if opt.dest in spec.given and opt.dest not in (*RESUMABLE, *WHERE) and opt.get(spec) != run_has.get(opt.field):
            fixed.append(opt.dest)
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise TuiGptError(
            f"{flags}: a resumed run keeps its checkpoint's settings; only --lr, --batch-size, "
            "--eval-interval, --head-interval and --keep can change on --resume"
        )
    changed = {}
    for name in (n for n in spec.given if n in RESUMABLE):
        value = getattr(spec.train, name)
        if value is None or value == getattr(trainer.config, name):
            continue
        setattr(trainer.config, name, value)
        setattr(spec.train, name, value)
        changed[name] = value
    if changed:
        trainer.history.change(trainer.step, **changed)


def _open_pretrained(spec: RunSpec, model: str, corpus: Corpus, progress: Progress | None) -> LoadedRun:
    """Fine-tune the Hugging Face GPT-2 model `model` (spec.model) on `corpus`: its tokenizer, its weights, our loop."""
    from tui_gpt.engine import hf
    from tui_gpt.engine.dataset import TokenData
    from tui_gpt.engine.devices import pick_device
    from tui_gpt.engine.tokenizer import TextTokenizer
    from tui_gpt.engine.trainer import Trainer

    folder = hf.find_model(model)
    mconf = hf.read_gpt_config(folder, block_size=spec.block_size, dropout=spec.dropout or 0.0)
    mconf.causal = spec.causal
    tconf = replace(spec.train)
    # Refuse before the text is tokenized or a byte allocated, and say what it will take.
    device = str(pick_device(tconf.device))
    memory = hf.check_fits(mconf, tconf.batch_size, training=True, device=device)
    if progress:
        progress(memory, 0, 1)
    tokenizer = TextTokenizer.load_pretrained(folder)
    memory = hf.fit_tokenizer(tokenizer, mconf, folder, tconf.batch_size, training=True, device=device)
    data = TokenData.build(corpus, tokenizer, _step(progress, "tokenizing"))
    if progress:
        progress(f"loading {spec.model}", 0, 1)
    with hf.skip_init():
        trainer = Trainer(mconf, tconf, data)
    hf.load_weights(trainer.model, folder)
    return LoadedRun(spec, corpus, tokenizer, data, trainer, memory)


def _step(progress: Progress | None, what: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(what, done, total)
