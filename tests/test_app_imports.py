"""Import hygiene: the UI modules load without torch, and the trainer process never loads Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


def _modules_after(imports: str) -> set[str]:
    code = f"import sys\n{imports}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "imports",
    ["import tui_gpt.app.gpt_app, tui_gpt.commands.cli", "import tui_gpt.commands.cli, tui_gpt.commands.launch"],
)
def test_the_app_and_cli_import_without_torch(imports):
    top = _top(_modules_after(imports))
    if "gpt_app" in imports:
        assert "textual" in top
    assert "torch" not in top, "the app must paint before torch loads"


def test_the_overlays_read_the_run_registry_without_torch():
    """The app reads the registry itself (runs.py, tracking.py, recorder.settings_of): SQLite, no torch, no model."""
    top = _top(
        _modules_after(
            "import tui_gpt.app.earlier_runs.overlays, tui_gpt.app.widgets.overlay_lines, tui_gpt.runs.recorder"
        )
    )
    assert "torch" not in top


def test_the_cli_parser_imports_neither_torch_nor_textual():
    top = _top(
        _modules_after(
            "import tui_gpt.commands.cli; tui_gpt.commands.cli.parser_app(); tui_gpt.commands.cli.parser_train()"
        )
    )
    assert "torch" not in top
    assert "textual" not in top


def test_the_trainer_process_module_does_not_import_textual():
    top = _top(_modules_after("import tui_gpt.link.worker, tui_gpt.link.client, tui_gpt.link.protocol"))
    assert "textual" not in top
    assert "torch" not in top, "the worker imports torch inside the spawned process, not at import"


# ---- the shape of the code: one road to the model, no cycles --------------------------------------

PACKAGE = Path(__file__).resolve().parent.parent / "tui_gpt"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, runtime_only: bool) -> set[str]:
    """Every module `path` imports, also inside functions; with `runtime_only`, not under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_no_import_cycle_in_the_package():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {m for m in _imports(path, runtime_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def _names_the_app(path: Path) -> bool:
    """Whether `path` mentions GPTApp: a name, an import, an attribute, a string or a comment."""
    text = path.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Name) and node.id == "GPTApp":
            return True
        if isinstance(node, ast.alias) and "GPTApp" in (node.name, node.asname):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "GPTApp":
            return True
    return "GPTApp" in text  # in a string, a docstring or a comment


def test_no_app_module_but_gpt_app_names_the_app():
    """Controllers get narrow doors (state.Doors, messages), never GPTApp: not even under TYPE_CHECKING."""
    modules = [p for p in (PACKAGE / "app").rglob("*.py") if p != PACKAGE / "app" / "gpt_app.py"]
    assert len(modules) > 20, "every module of the app package is read"
    offenders = sorted(_module_name(p) for p in modules if _names_the_app(p))
    assert not offenders, offenders
    assert _names_the_app(PACKAGE / "app" / "gpt_app.py"), "the check finds the class where it is defined"
