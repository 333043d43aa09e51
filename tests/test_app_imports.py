"""Import hygiene: the UI modules load without torch, and the trainer process never loads Textual."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(imports: str) -> set[str]:
    code = f"import sys\n{imports}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("imports", ["import tui_gpt.app.app, tui_gpt.cli", "import tui_gpt.cli, tui_gpt.app.run"])
def test_the_app_and_cli_import_without_torch(imports):
    top = _top(_modules_after(imports))
    if "app.app" in imports:
        assert "textual" in top
    assert "torch" not in top, "the app must paint before torch loads"


def test_the_cli_parser_imports_neither_torch_nor_textual():
    top = _top(_modules_after("import tui_gpt.cli; tui_gpt.cli.parser_app(); tui_gpt.cli.parser_train()"))
    assert "torch" not in top
    assert "textual" not in top


def test_the_trainer_process_module_does_not_import_textual():
    top = _top(_modules_after("import tui_gpt.worker, tui_gpt.client, tui_gpt.protocol"))
    assert "textual" not in top
    assert "torch" not in top, "the worker imports torch inside the spawned process, not at import"
