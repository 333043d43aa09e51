"""User text is text: a prompt, an --out folder or a file name that looks like Rich markup is shown as typed."""

from __future__ import annotations

import pytest

from tui_gpt.commands.cli import main
from tui_gpt.engine.session import open_run

# Closing tag with nothing open (MarkupError), a style, a link: each would be read as markup, or crash.
LOOKS_LIKE_MARKUP = ["[/]", "[bold]b[/bold]", "[link=https://example.com]l[/link]"]
TINY = [
    "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
    "--eval-iters", "2", "--dtype", "float32", "--device", "cpu", "--threads", "1",
]  # fmt: skip


def squash(text: str) -> str:
    """`text` without whitespace: a line Rich wrapped still matches."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    spec_dir = tmp_path_factory.mktemp("user-text")
    from tui_gpt.engine.session import RunSpec

    spec = RunSpec(tokenizer="char", n_layer=1, n_head=2, n_embd=16, block_size=16, train={"device": "cpu"})
    return str(open_run(spec).save(spec_dir / "ck"))


@pytest.mark.parametrize("words", [[], ["--words"]], ids=["tokens", "words"])
@pytest.mark.parametrize("markup", LOOKS_LIKE_MARKUP)
def test_complete_shows_a_prompt_that_looks_like_markup_as_typed(ckpt, markup, words, capsys):
    prompt = f"The {markup} fox "
    assert main(["complete", ckpt, prompt, "--top-k", "3", *words]) == 0
    out, err = capsys.readouterr()
    assert squash(repr(prompt)) in squash(out), out
    assert "Traceback" not in out + err


def test_train_names_a_file_and_an_out_folder_that_look_like_markup_as_they_are(tmp_path, tiny_text, capsys):
    text = tmp_path / "data[v2][bold].txt"  # was shown as "data.txt"
    text.write_text(tiny_text, encoding="utf-8")
    out = tmp_path / "o[/][link=x]"  # the folder "][link=x]" in "o[": a MarkupError after the first save
    assert main(["train", str(text), "--steps", "2", "--eval-interval", "1", "--out", str(out), *TINY]) == 0
    stdout, stderr = capsys.readouterr()
    assert "Traceback" not in stderr
    assert squash(text.name) in squash(stderr)
    assert squash(f"saved step 1 to {out}") in squash(stderr) and squash(f"saved step 2 to {out}") in squash(stderr)
    assert stdout.strip() == str(out.resolve())
    assert (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([text.name, "o["])  # nothing else left


def test_a_failed_save_names_a_folder_that_looks_like_markup(tmp_path, tiny_text, capsys, monkeypatch):
    from tui_gpt.engine.session import LoadedRun
    from tui_gpt.errors import TuiGptError

    (tmp_path / "t.txt").write_text(tiny_text, encoding="utf-8")
    out = tmp_path / "[bold]o[link=x]"

    def full_disk(run: LoadedRun, where: object) -> None:
        raise TuiGptError(f"could not save to {where}: no space left on device [/]")

    monkeypatch.setattr(LoadedRun, "save", full_disk)
    assert main(["train", str(tmp_path / "t.txt"), "--steps", "1", "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert squash(f"could not save to {out}: no space left on device [/]") in squash(err)
    assert not (out / "model.safetensors").exists()


def test_export_names_folders_that_look_like_markup(ckpt, tmp_path, capsys):
    out = tmp_path / "hf[/]"
    assert main(["export", ckpt, str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout.strip() == str(out.resolve()) and squash(str(out)) in squash(stderr)
