"""Token ids on disk: one memory-mapped file per (corpus text, tokenizer), so a second run starts at once.

A cache file is a 64-byte header then the train ids then the validation ids, as uint16 where
the vocabulary fits, else uint32. It is written under a temporary name and renamed into
place, and read back only if its header, size and checksum all agree; anything else is
deleted and rebuilt. A small entry is copied into memory by the pass that checks it, so a file
cut short later cannot touch the run; a large one is memory-mapped from the file descriptor that
was checked, and a run checks its size before each batch it reads (see `Source`). The folder is
$TUI_GPT_CACHE, else $XDG_CACHE_HOME/tui-gpt/tokens, else ~/.cache/tui-gpt/tokens.

Builds hold the folder's `.lock` shared; the temp files of a killed build are removed by the next
run that can hold it alone, as a checkpoint's save removes the temp folders of killed saves.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import struct
import time
import uuid
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from tui_gpt.errors import NO_ROOM, WRITE_ERRORS, TuiGptError, env_path, env_path_or, reason

FORMAT = 1  # bump when the file layout or the way text becomes ids changes
MAGIC = b"TUIGPT-TOKENS\0\0\0"
HEADER = struct.Struct("<16sBxxxxxxxQQI12x")  # magic, itemsize, n_train, n_val, CRC-32 of the ids
HEADER_BYTES = 64
COPY_BYTES = 8 << 20
KEEP_BYTES = 20 * 10**9  # older entries beyond this much are removed, least recently used first
LOCK = ".lock"
TEMP = re.compile(r"[0-9a-f]{40}\.(tokens|val)\.tmp-\d+-[0-9a-f]{8}")  # a Writer's temp files, no one else's
LOCK_WAIT_SECONDS = 10.0
# Entries up to this size are read into the run's memory; beyond it they are mapped. Reading costs
# no more than the checksum pass already does (0.24 s for 256 MB either way), batches come as fast
# or faster, and the memory is the entry's size.
PRIVATE_BYTES = 256 << 20


def cache_dir() -> Path:
    if folder := env_path("TUI_GPT_CACHE"):
        return folder
    base = env_path_or("XDG_CACHE_HOME", "~/.cache")
    return base / "tui-gpt" / "tokens"


def cache_key(corpus_digest: str, tokenizer_json: str, *parts: object) -> str:
    """The name of the entry for this text under this tokenizer (and anything else in `parts`)."""
    h = hashlib.sha256()
    for part in (FORMAT, corpus_digest, tokenizer_json, *parts):
        h.update(repr(part).encode("utf-8") + b"\0")
    return h.hexdigest()[:40]


def _path(key: str) -> Path:
    return cache_dir() / f"{key}.tokens"


def _read(f: io.BufferedIOBase, length: int, dtype: np.dtype, keep: bool) -> tuple[int | None, int, np.ndarray | None]:
    """CRC-32 and largest id of the `length` bytes of ids after the header of the open file `f`,
    read in blocks, not mapped (CRC None if the file ends sooner); with `keep`, those bytes too,
    copied in the same pass.

    CRC-32 catches truncation and flipped bits at several GB/s; the entry's name, a hash of
    the text and the tokenizer, is what keeps one corpus's ids from serving another.
    """
    out = np.empty(length, dtype=np.uint8) if keep else None
    block = out.data if out is not None else memoryview(bytearray(min(COPY_BYTES, length)))
    crc, top, done = 0, -1, 0
    f.seek(HEADER_BYTES)
    while done < length:
        n = min(COPY_BYTES, length - done)  # a whole number of ids: COPY_BYTES is a multiple of 4
        view = block[done : done + n] if out is not None else block[:n]
        if f.readinto(view) != n:  # a regular file reads short only at its end
            return None, top, None
        crc = zlib.crc32(view, crc)
        top = max(top, int(np.frombuffer(view, dtype=dtype).max()))
        done += n
    return crc, top, out


class Cut(TuiGptError):
    """The cache file a run maps was cut short under it: the run saves what it trained and stops."""


class Source:
    """The open cache file a run's ids are mapped from.

    Reading a mapped page past the end of a file that was cut short kills the process with SIGBUS,
    so a run calls `check` before each batch it reads (an fstat: about 1 us).
    """

    def __init__(self, f: BinaryIO, path: Path, size: int) -> None:
        self.fd = os.dup(f.fileno())  # fstat this, not the path: pruning may unlink the entry we map
        weakref.finalize(self, os.close, self.fd)
        self.path, self.size = path, size

    def check(self) -> None:
        try:
            size = os.fstat(self.fd).st_size
        except OSError:
            size = 0
        if size < self.size:
            raise Cut(
                f"{self.path}: the token cache was cut to {size:,} of its {self.size:,} bytes while this run "
                "read it (the next run rebuilds it)"
            )


class Entry(NamedTuple):
    train: np.ndarray  # read-only
    val: np.ndarray
    source: Source | None  # where they are mapped from; None: they are in memory


def _entry(f: BinaryIO, path: Path, dtype: np.dtype, n_train: int, n_val: int, copy: np.ndarray | None) -> Entry:
    """The ids of the checked cache file `f`: `copy` if it was read into memory, else mapped from `f`."""
    n = n_train + n_val
    if copy is None and n == 0:  # nothing to map (mmap refuses a length of 0)
        copy = np.empty(0, dtype=np.uint8)
    if copy is not None:
        ids = copy.view(dtype)
        ids.flags.writeable = False
        return Entry(ids[:n_train], ids[n_train:], None)
    ids = np.memmap(f, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(n,))
    source = Source(f, path, HEADER_BYTES + n * dtype.itemsize)
    source.check()  # cut between the checksum and the mapping
    return Entry(ids[:n_train], ids[n_train:], source)


@contextlib.contextmanager
def _folder_lock(folder: Path, exclusive: bool, wait: float = 0.0) -> Iterator[bool]:
    """Hold the cache folder's flock for the block, trying for up to `wait` seconds; the kernel drops
    it with its holder, so a killed build holds nothing.

    Yields False where there is no lock to be had (a read-only folder, no flock); raises
    BlockingIOError while other processes hold it.
    """
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            except OSError:
                held = False
            break
        yield held
    finally:
        os.close(fd)


def remove_orphans() -> None:
    """Delete the temp files of cache builds that were killed; never while a build is live."""
    folder = cache_dir()
    try:
        orphans = [p for p in folder.glob("*.tmp-*") if TEMP.fullmatch(p.name)]
    except OSError:
        return
    if not orphans:
        return
    # A live build, in another process or this one, holds the lock shared: its files may be among these.
    with contextlib.suppress(BlockingIOError), _folder_lock(folder, exclusive=True) as alone:
        for p in orphans if alone else ():
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)


def load(key: str, dtype: np.dtype, vocab_size: int) -> Entry | None:
    """The (train, val) ids cached under `key`, or None if there is no sound entry (a damaged one,
    or one with an id of `vocab_size` or more, is removed). Removes what killed builds left first."""
    remove_orphans()
    path = _path(key)
    entry = None
    try:
        with open(path, "rb") as f:
            magic, itemsize, n_train, n_val, digest = HEADER.unpack(f.read(HEADER.size))
            length = (n_train + n_val) * itemsize
            # The size against the header first: nothing is mapped past the file's end.
            if magic == MAGIC and itemsize == dtype.itemsize and os.fstat(f.fileno()).st_size == HEADER_BYTES + length:
                crc, top, copy = _read(f, length, dtype, keep=length <= PRIVATE_BYTES)
                # A sound checksum over ids the model cannot embed: written by someone else, not us.
                if crc == digest and top < vocab_size:
                    entry = _entry(f, path, dtype, n_train, n_val, copy)
    except FileNotFoundError:
        return None
    except (OSError, struct.error, ValueError, Cut):  # ValueError, Cut: the file was cut meanwhile
        entry = None
    with contextlib.suppress(OSError):  # a folder we may read but not write still serves
        if entry is None:
            path.unlink(missing_ok=True)
        else:
            os.utime(path)  # recently used: pruned last
    return entry


class Writer:
    """Builds one cache entry: documents go in one at a time; `commit` makes it visible atomically.

    Per document the first 90% (or whatever `val_fraction` leaves) of its ids go to train and
    the rest to validation, an end-of-text id between documents within each split.
    """

    def __init__(self, key: str, dtype: np.dtype, eot_id: int, val_fraction: float, need_bytes: int) -> None:
        self.key, self.dtype, self.eot, self.val_fraction = key, np.dtype(dtype), eot_id, val_fraction
        # `need_bytes` is the entry's size at most, but the build peaks higher: end_document and commit
        # copy validation ids from one file to the other before either copy goes (measured: 2.2 bytes
        # a character where the uint16 entry takes 2). A tenth more for the file system's own blocks.
        need_bytes = int(need_bytes * (1 + val_fraction) * 1.1)
        folder = cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            raise TuiGptError(
                f"{folder}: cannot use it for the token cache ({exc.strerror or exc}); "
                f"set TUI_GPT_CACHE to a writable folder"
            ) from None
        check_space(folder, need_bytes, free)
        # Shared while we write: remove_orphans, which needs it alone, never takes our temp files.
        self._held = contextlib.ExitStack()
        try:
            self._held.enter_context(_folder_lock(folder, exclusive=False, wait=LOCK_WAIT_SECONDS))
        except BlockingIOError:
            raise TuiGptError(
                f"{folder / LOCK}: held by another process for over {LOCK_WAIT_SECONDS:.0f} s; "
                "try again, or set TUI_GPT_CACHE to another folder"
            ) from None
        tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp = folder / f"{key}.tokens{tag}"
        self.tmp_val = folder / f"{key}.val{tag}"
        try:
            self.f = open(self.tmp, "w+b")  # noqa: SIM115
            self.v = open(self.tmp_val, "w+b")  # noqa: SIM115
        except OSError as exc:  # a read-only folder, say
            with contextlib.suppress(OSError):
                self.tmp.unlink(missing_ok=True)  # made, if only the second open failed
            raise _unwritable(folder, exc) from None
        self.f.write(b"\0" * HEADER_BYTES)
        self.n_train = self.n_val = 0
        self._doc = 0  # ids of the document being written

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self.close()
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:  # ours: reading the text never gives these
            raise _unwritable(self.tmp.parent, exc) from None

    def add(self, ids: np.ndarray) -> None:
        """Append ids of the current document."""
        if not len(ids):
            return
        if self._doc == 0 and self.n_train:
            self.f.write(np.array([self.eot], dtype=self.dtype).tobytes())
            self.n_train += 1
        self.f.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self._doc += len(ids)
        self.n_train += len(ids)

    def end_document(self, repeat: int = 1) -> None:
        """Move the current document's last ids to the validation split; its training part then goes
        in `repeat` times in all (a bundled text weighed up: small, so it is read back into memory)."""
        n = self._doc
        n_val = int(n * self.val_fraction)
        self._doc = 0
        if n_val:
            self._to_validation(n_val)
        if repeat > 1 and n > n_val:
            size = self.dtype.itemsize
            self.f.flush()
            self.f.seek(HEADER_BYTES + (self.n_train - (n - n_val)) * size)
            part = self.f.read()
            self.f.seek(0, os.SEEK_END)
            for _ in range(repeat - 1):
                self.f.write(np.array([self.eot], dtype=self.dtype).tobytes() + part)
            self.n_train += (repeat - 1) * (n - n_val + 1)

    def _to_validation(self, n_val: int) -> None:
        if self.n_val:
            self.v.write(np.array([self.eot], dtype=self.dtype).tobytes())
            self.n_val += 1
        size = self.dtype.itemsize
        start = HEADER_BYTES + (self.n_train - n_val) * size
        self.f.flush()
        self.f.seek(start)
        shutil.copyfileobj(self.f, self.v, COPY_BYTES)
        self.f.seek(start)
        self.f.truncate()
        self.n_train -= n_val
        self.n_val += n_val

    def commit(self, key: str | None = None) -> Entry:
        """Join the splits, write the header, rename into place (under `key` if given: the key of the
        text actually written, when it is not the one looked up); returns the ids."""
        if key is not None:
            self.key = key
        size = self.dtype.itemsize
        self.v.flush()
        self.v.seek(0)
        self.f.seek(HEADER_BYTES + self.n_train * size)
        shutil.copyfileobj(self.v, self.f, COPY_BYTES)
        self.f.flush()
        length = (self.n_train + self.n_val) * size
        digest, _, copy = _read(self.f, length, self.dtype, keep=length <= PRIVATE_BYTES)
        if digest is None:
            raise TuiGptError(f"{self.tmp}: cut short while it was written; run again")
        self.f.seek(0)
        self.f.write(HEADER.pack(MAGIC, size, self.n_train, self.n_val, digest).ljust(HEADER_BYTES, b"\0"))
        self.f.flush()
        path = _path(self.key)
        os.replace(self.tmp, path)
        # Mapped from the file we wrote, never reopened by name: the name may be someone else's by now.
        entry = _entry(self.f, path, self.dtype, self.n_train, self.n_val, copy)
        self.close()
        prune(keep=path)
        return entry

    def close(self) -> None:
        for f in (self.f, self.v):
            with contextlib.suppress(OSError):  # the last flush, on a full disk: the files go anyway
                f.close()
        self.tmp.unlink(missing_ok=True)
        self.tmp_val.unlink(missing_ok=True)
        self._held.close()


def _unwritable(folder: Path, exc: OSError) -> TuiGptError:
    """One line for a build the disk stopped: full, or read-only."""
    to_do = "free some space or set TUI_GPT_CACHE to a folder on a bigger disk"
    if exc.errno not in NO_ROOM:
        to_do = "set TUI_GPT_CACHE to a writable folder"
    return TuiGptError(f"{folder}: cannot write the token cache ({reason(exc)}); {to_do}")


def check_space(folder: Path, need: int, free: int) -> None:
    """Refuse, in one line, to start writing `need` bytes where only `free` are left."""
    if need > free:
        raise TuiGptError(
            f"{folder}: the token cache needs about {need / 1e9:.1f} GB, only {free / 1e9:.1f} GB free; "
            f"free some space or set TUI_GPT_CACHE to a folder on a bigger disk"
        )


def prune(keep: Path, limit: int = KEEP_BYTES) -> None:
    """Remove the least recently used entries until the cache holds at most `limit` bytes
    (never `keep`). A run that still maps a removed file keeps reading it."""
    try:
        entries = [(p.stat().st_mtime, p.stat().st_size, p) for p in cache_dir().glob("*.tokens")]
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries):
        if total <= limit:
            break
        if p != keep:
            p.unlink(missing_ok=True)
            total -= size
