"""Load training text: files, directories (recursively) or a built-in corpus by name.

Every problem with the input becomes one `TuiGptError` line that names the file and says
what to do. Nothing here reads more than it must: sizes are checked before files are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tui_gpt.errors import TuiGptError
from tui_gpt.settings import BUILTINS

DEFAULT_CORPUS = "fables"
# Bytes of memory needed per byte of text: the text, its tokens and the training tensors.
MEMORY_PER_BYTE = 24
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    name: str
    text: str


@dataclass(frozen=True)
class Corpus:
    name: str
    documents: tuple[Document, ...]
    skipped: tuple[str, ...] = ()  # files in a directory that were not text

    @property
    def chars(self) -> int:
        return sum(len(d.text) for d in self.documents)

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.documents]


def assets_dir() -> Path:
    """The bundled assets: inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "assets", here.parent / "assets"):
        if candidate.is_dir():
            return candidate
    raise TuiGptError("the bundled assets are missing: reinstall tui-gpt")


def available_memory() -> int:
    """Bytes of memory the system can still give us."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _builtin(name: str) -> Corpus:
    if name == "fables":
        folder = assets_dir() / "fables"
        files = sorted(folder.glob("*.txt"))
        docs = tuple(Document(f"fables/{p.name}", p.read_text(encoding="utf-8")) for p in files)
        return Corpus("fables (bundled)", docs)
    from pydoc_data import topics  # ships with every CPython

    docs = tuple(Document(f"python-docs/{key}", text) for key, text in sorted(topics.topics.items()) if text.strip())
    return Corpus("python-docs (Python language reference)", docs)


def _read_text(path: Path, explicit: bool) -> str | None:
    """The text of `path`, or None for a non-text file found inside a directory."""
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise TuiGptError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise TuiGptError(f"{path}: cannot read ({exc.strerror or exc}); check the path") from None
    if b"\x00" in raw[:SNIFF_BYTES]:
        if explicit:
            raise TuiGptError(f"{path}: looks like a binary file, not text; pass a UTF-8 text file")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if explicit:
            raise TuiGptError(
                f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                f"convert it, e.g. iconv -f latin1 -t utf-8"
            ) from None
        return None


def _files_under(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths = (Path(root) / f for f in sorted(files) if not f.startswith("."))
        out.extend(p for p in paths if _is_file(p, folder))
    return out


def _is_file(path: Path, folder: Path) -> bool:
    try:
        return path.is_file()
    except OSError as exc:  # a link into a folder we may not enter
        why = f"cannot be read ({exc.strerror}); fix its permissions or move it out of {folder}"
        raise TuiGptError(f"{path}: {why}") from None


def load_corpus(sources: list[str] | tuple[str, ...] = (), memory: int | None = None) -> Corpus:
    """Load `sources` (paths or built-in names); no sources means the bundled default."""
    sources = list(sources) or [DEFAULT_CORPUS]
    if len(sources) == 1 and sources[0] in BUILTINS and not Path(sources[0]).exists():
        return _builtin(sources[0])
    plan: list[tuple[Path, bool]] = []
    for src in sources:
        path = Path(src).expanduser()
        if src in BUILTINS and not path.exists():
            raise TuiGptError(f"built-in corpus {src!r} cannot be mixed with files; pass it alone")
        try:
            path.stat()
        except FileNotFoundError:
            pass  # a missing file gets its own message below
        except OSError as exc:
            raise TuiGptError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
        if path.is_dir():
            found = _files_under(path)
            if not found:
                raise TuiGptError(f"{path}: directory has no files in it; pass a folder with .txt files")
            plan.extend((f, False) for f in found)
        elif path.is_file():
            plan.append((path, True))
        elif path.exists():
            raise TuiGptError(f"{path}: not a regular file; pass a text file or a folder")
        else:
            raise TuiGptError(
                f"{src}: no such file or directory; pass text files, a folder, "
                f"or a built-in corpus ({', '.join(BUILTINS)})"
            )
    total = sum(p.stat().st_size for p, _ in plan)
    budget = available_memory() if memory is None else memory
    if total * MEMORY_PER_BYTE > budget:
        need = _human(total * MEMORY_PER_BYTE)
        raise TuiGptError(
            f"{', '.join(sources)}: corpus is {_human(total)}, too large for memory "
            f"(needs about {need}, {_human(budget)} free); pass fewer or smaller files"
        )
    docs, skipped = [], []
    for path, explicit in plan:
        text = _read_text(path, explicit)
        if text is None:
            skipped.append(str(path))
            continue
        if not text.strip():
            if explicit:
                raise TuiGptError(f"{path}: file is empty or only whitespace; pass a file with text in it")
            skipped.append(str(path))
            continue
        docs.append(Document(str(path), text))
    if not docs:
        where = ", ".join(sources)
        raise TuiGptError(f"{where}: no UTF-8 text found ({len(skipped)} files skipped); pass plain text files")
    name = sources[0] if len(sources) == 1 else f"{sources[0]} + {len(sources) - 1} more"
    return Corpus(name, tuple(docs), tuple(skipped))
