"""Load training text: files, directories (recursively) or a built-in corpus by name.

Every problem with the input becomes one `TuiGptError` line that names the file and says
what to do. Files are never held whole: loading streams each one once to check it, count
its characters, collect its alphabet and hash it; tokenizing streams it again.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tui_gpt.errors import TuiGptError, checked_path
from tui_gpt.settings import BUILTINS, INDUCTION_TASK, ONE_FABLE, is_builtin

DEFAULT_CORPUS = "stories"
# The default text: the bundled stories, with the fables' training part seen this many times. The
# fables hold the seed sentence; without the weight a 1 MB text would bury it (docs/learning-speed.md).
FABLE_WEIGHT = 6
# Tokens live on disk (see tokencache), so memory does not limit the corpus; this cap only
# catches a source that points at far more than anyone means to train on.
MAX_CORPUS_BYTES = 16 * 10**9
SNIFF_BYTES = 8192
BLOCK_BYTES = 4 << 20  # read files in blocks this big
SAMPLE_CHARS = 10_000_000  # tokenizers other than char train on at most this much text
SAMPLE_PIECES = 20  # spread over the corpus in this many pieces

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


@dataclass(frozen=True)
class Scan:
    """What one streaming pass over a document learns."""

    chars: int
    alphabet: str  # every distinct character, sorted
    digest: bytes  # SHA-256 of the UTF-8 bytes
    blank: bool  # empty or only whitespace


class Document:
    """One text: held in memory (built-in corpora, tests) or a file streamed in blocks."""

    def __init__(self, name: str, text: str | None = None, path: Path | None = None, repeat: int = 1) -> None:
        if (text is None) == (path is None):
            raise ValueError("a Document has either text or a path")
        self.name = name
        self.repeat = repeat  # its training part goes in this many times (its validation part once)
        self._text = text
        self.path = path
        self._scan: Scan | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        return (self.name, self._text, self.path, self.repeat) == (other.name, other._text, other.path, other.repeat)

    def __hash__(self) -> int:
        return hash((self.name, self.path))

    def __repr__(self) -> str:
        return f"Document({self.name!r})"

    @property
    def size(self) -> int:
        """Bytes of UTF-8 text (for a file: its size on disk)."""
        if self.path is None:
            return len(self._text.encode("utf-8"))  # type: ignore[union-attr]
        return self.path.stat().st_size

    @property
    def text(self) -> str:
        """The whole text in memory: for small corpora and tools, never the training path."""
        if self._text is not None:
            return self._text
        return "".join(t for t, _ in self.blocks())

    def blocks(self, size: int = BLOCK_BYTES) -> Iterator[tuple[str, bytes]]:
        """The text in decoded pieces, each with the raw bytes it came from (BOM dropped)."""
        if self._text is not None:
            for i in range(0, len(self._text), size):
                piece = self._text[i : i + size]
                yield piece, piece.encode("utf-8")
            return
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        with _open(self.path) as f:  # type: ignore[arg-type]
            while raw := f.read(size):
                yield decoder.decode(raw), raw
            yield decoder.decode(b"", final=True), b""

    @property
    def scanned(self) -> Scan:
        if self._scan is None:
            self._scan = self.scan()
        return self._scan

    def scan(self, progress: Callable[[int], None] | None = None) -> Scan:
        """Stream the document once: check it is UTF-8 text, count, collect its alphabet, hash it.

        Raises `_NotText` for a binary or non-UTF-8 file; `progress` gets each block's byte count.
        """
        seen = np.zeros(0x110000, dtype=bool)
        h = hashlib.sha256()
        chars, blank = 0, True
        pieces = self.blocks() if self._text is not None else self._checked_blocks()
        for text, raw in pieces:
            h.update(raw)
            chars += len(text)
            if blank and text.strip():
                blank = False
            _mark(seen, text)
            if progress:
                progress(len(raw))
        alphabet = "".join(map(chr, np.flatnonzero(seen).tolist()))
        scan = Scan(chars, alphabet, h.digest(), blank)
        self._scan = scan
        return scan

    def _checked_blocks(self) -> Iterator[tuple[str, bytes]]:
        path = self.path
        offset = 0
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        with _open(path) as f:  # type: ignore[arg-type]
            while True:
                raw = f.read(BLOCK_BYTES)
                if offset == 0 and b"\x00" in raw[:SNIFF_BYTES]:
                    raise _NotText(f"{path}: looks like a binary file, not text; pass a UTF-8 text file")
                pending = decoder.getstate()[0]
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as exc:
                    at = offset - len(pending) + exc.start
                    bad = (pending + raw)[exc.start]
                    raise _NotText(
                        f"{path}: not UTF-8 (byte 0x{bad:02x} at offset {at}); "
                        f"convert it, e.g. iconv -f latin1 -t utf-8"
                    ) from None
                offset += len(raw)
                yield text, raw
                if not raw:
                    return


class _NotText(TuiGptError):
    """A file that is not UTF-8 text: an error when named, skipped inside a folder."""


def _open(path: Path) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except PermissionError:
        raise TuiGptError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise TuiGptError(f"{path}: cannot read ({exc.strerror or exc}); check the path") from None


def _mark(seen: np.ndarray, text: str) -> None:
    """Set seen[c] for every code point c in `text`, in C speed."""
    if not text:
        return
    if text.isascii():
        counts = np.bincount(np.frombuffer(text.encode("ascii"), dtype=np.uint8), minlength=128)
    else:
        counts = np.bincount(np.frombuffer(text.encode("utf-32-le"), dtype="<u4"))
    seen[: len(counts)] |= counts > 0


@dataclass(frozen=True)
class Corpus:
    name: str
    documents: tuple[Document, ...]
    skipped: tuple[str, ...] = ()  # files in a directory that were not text

    @property
    def chars(self) -> int:
        return sum(d.scanned.chars for d in self.documents)

    @property
    def size(self) -> int:
        """Bytes of text in all."""
        return sum(d.size for d in self.documents)

    @cached_property
    def alphabet(self) -> str:
        """Every character of every document, sorted."""
        return "".join(sorted(set().union(*(d.scanned.alphabet for d in self.documents))))

    @cached_property
    def digest(self) -> str:
        """A hash of the documents' texts in order, each as many times as it is repeated: what the tokens depend on."""
        return combined_digest(d.scanned.digest for d in self.documents for _ in range(d.repeat))

    @property
    def texts(self) -> list[str]:
        """Every document whole, in memory: for small corpora and tools, never the training path."""
        return [d.text for d in self.documents]

    def sample_texts(self, limit: int = SAMPLE_CHARS) -> list[str]:
        """The whole corpus if it has at most `limit` characters, else that much in pieces of whole lines
        spread evenly over it: what BPE and word tokenizers train on."""
        if self.chars <= limit:
            return self.texts
        total = self.size
        want = max(1, limit // SAMPLE_PIECES)
        out: list[str] = []
        for j in range(SAMPLE_PIECES):
            at = j * total // SAMPLE_PIECES
            for d in self.documents:
                if at < d.size:
                    out.append(_lines_at(d, at, want))
                    break
                at -= d.size
        return [t for t in out if t]


def combined_digest(digests: Iterable[bytes]) -> str:
    """The corpus digest from its documents' SHA-256 digests, in order."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d)
    return h.hexdigest()


def _lines_at(doc: Document, at: int, want: int) -> str:
    """About `want` bytes of whole lines of `doc` from byte offset `at` on."""
    if doc.path is None:
        raw = doc.text.encode("utf-8")[at : at + want]
    else:
        with _open(doc.path) as f:
            f.seek(at)
            raw = f.read(want)
    # Whole lines where there are line breaks to cut at; a piece of one long line is kept as it is.
    first, last = raw.find(b"\n"), raw.rfind(b"\n")
    start = first + 1 if at and 0 <= first < last else 0
    end = last + 1 if at + len(raw) < doc.size and last >= start else len(raw)
    raw = raw[start:end]
    return raw.decode("utf-8", errors="ignore").removeprefix("\ufeff")


def assets_dir() -> Path:
    """The bundled assets: inside the installed package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "assets", package.parent / "assets"):
        if candidate.is_dir():
            return candidate
    raise TuiGptError("the bundled assets are missing: reinstall tui-gpt")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _bundled(folder: str, repeat: int = 1) -> tuple[Document, ...]:
    root = assets_dir()
    files = sorted((root / folder).rglob("*.txt"))
    return tuple(Document(p.relative_to(root).as_posix(), p.read_text(encoding="utf-8"), repeat=repeat) for p in files)


def _one_fable(name: str) -> Corpus:
    """One bundled fable alone ("fables/01"): a text small enough to learn by heart."""
    number = name.removeprefix(ONE_FABLE)
    fables = _bundled("fables")
    found = [d for d in fables if Path(d.name).name.startswith(f"{number}-")]
    if not found:
        last = f"{ONE_FABLE}{len(fables):02d}"
        raise TuiGptError(f"{name}: no such fable; the bundled fables are {ONE_FABLE}01 to {last}")
    title = Path(found[0].name).stem.removeprefix(f"{number}-").replace("-", " ")
    return Corpus(f"one fable ({title})", tuple(found))


def _builtin(name: str) -> Corpus:
    if name.startswith(ONE_FABLE):
        return _one_fable(name)
    if name == "fables":
        return Corpus("fables (bundled)", _bundled("fables"))
    if name == "stories":
        stories = _bundled("stories")
        name = f"stories (bundled: {len(stories)} stories and the fables)"
        return Corpus(name, stories + _bundled("fables", FABLE_WEIGHT))
    if name == INDUCTION_TASK:
        from tui_gpt.engine.synthetic import LINES, induction_text

        what = f"{INDUCTION_TASK} (generated: {LINES:,} lines, each a random string repeated)"
        return Corpus(what, (Document(INDUCTION_TASK, induction_text()),))
    from pydoc_data import topics  # ships with every CPython

    docs = tuple(Document(f"python-docs/{key}", text) for key, text in sorted(topics.topics.items()) if text.strip())
    return Corpus("python-docs (Python language reference)", docs)


def _files_under(folder: Path) -> list[Path]:
    out: list[Path] = []
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


def load_corpus(
    sources: list[str] | tuple[str, ...] = (),
    progress: Progress | None = None,
    max_bytes: int = MAX_CORPUS_BYTES,
) -> Corpus:
    """Load `sources` (paths or built-in names); no sources means the bundled default.

    Streams every file once (see `Document.scan`), reporting bytes read to `progress`.
    """
    sources = list(sources) or [DEFAULT_CORPUS]
    if len(sources) == 1 and is_builtin(sources[0]) and not Path(sources[0]).exists():
        return _builtin(sources[0])
    plan = [entry for src in sources for entry in _files_of(src)]
    total = sum(p.stat().st_size for p, _ in plan)
    if total > max_bytes:
        raise TuiGptError(
            f"{', '.join(sources)}: corpus is {_human(total)}, more than the {_human(max_bytes)} "
            f"tui-gpt trains on; pass fewer or smaller files"
        )
    docs, skipped = _scan_all(plan, total, progress)
    if not docs:
        where = ", ".join(sources)
        raise TuiGptError(f"{where}: no UTF-8 text found ({len(skipped)} files skipped); pass plain text files")
    name = sources[0] if len(sources) == 1 else f"{sources[0]} + {len(sources) - 1} more"
    return Corpus(name, tuple(docs), tuple(skipped))


def _files_of(src: str) -> list[tuple[Path, bool]]:
    """The files source `src` names, each with whether it was named itself (a folder's files are not)."""
    path = checked_path(src)
    if is_builtin(src) and not path.exists():
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
        return [(f, False) for f in found]
    if path.is_file():
        return [(path, True)]
    if path.exists():
        raise TuiGptError(f"{path}: not a regular file; pass a text file or a folder")
    raise TuiGptError(
        f"{src}: no such file or directory; pass text files, a folder, or a built-in corpus ({', '.join(BUILTINS)})"
    )


def _scan_all(plan: list[tuple[Path, bool]], total: int, progress: Progress | None) -> tuple[list[Document], list[str]]:
    """Scan every planned file once: (the documents with text, the files of folders that had none).

    A file named itself that is not text, or is blank, is an error; one found in a folder is skipped.
    """
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    docs, skipped = [], []
    for path, explicit in plan:
        doc = Document(str(path), path=path)
        start = done
        try:
            scan = doc.scan(advance)
        except _NotText:
            if explicit:
                raise
            skipped.append(str(path))
            advance(start + path.stat().st_size - done)  # what the scan did not get to
            continue
        if scan.blank:
            if explicit:
                raise TuiGptError(f"{path}: file is empty or only whitespace; pass a file with text in it")
            skipped.append(str(path))
            continue
        docs.append(doc)
    return docs, skipped
