"""The house's rules, checked by tools: the floors (import-linter), one name per idea, docs that name
every module, and the type checker at 0 errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tui_gpt"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    return shutil.which(name, path=str(BIN)) or shutil.which(name)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter]: the floors, the app off the engine, no Textual below the app,
    no cycles."""
    lint = _tool("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (it comes with the test extra)")
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_two_modules_share_a_stem() -> None:
    stems: dict[str, list[str]] = {}
    for path in _modules():
        if path.name != "__main__.py":
            stems.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    packages = {p.parent.name for p in PACKAGE.rglob("__init__.py")}
    shared = {stem: paths for stem, paths in stems.items() if len(paths) > 1 or stem in packages}
    assert not shared, shared


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_the_docs_name_every_package_and_module(doc: str) -> None:
    """Each module appears as `engine/model.py`, or as `model.py` on a line (a table row) that names `engine/`."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = [str(p.relative_to(PACKAGE)) for p in _modules() if p.name != "__main__.py" and not _named(p, text)]
    packages = [str(p.parent.relative_to(PACKAGE)) + "/" for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE]
    missing += [pkg for pkg in packages if pkg not in text]
    assert not missing, f"{doc} does not name: {missing}"


def _named(path: Path, text: str) -> bool:
    if path.parent == PACKAGE:
        return re.search(rf"(?<![\w/]){re.escape(path.name)}", text) is not None
    folder = f"{path.parent.name}/"
    if re.search(rf"(?<![\w]){re.escape(folder + path.name)}", text):
        return True
    file = re.compile(rf"(?<![\w/]){re.escape(path.name)}")
    return any(folder in line and file.search(line) for line in text.splitlines())


def test_the_type_checker_finds_nothing() -> None:
    """pyproject.toml's [tool.mypy]: strict on engine/, probes/ and link/; the rest checked with defaults."""
    mypy = _tool("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed (it comes with the test extra)")
    done = subprocess.run([mypy, "tui_gpt"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
