"""The kept OpenLineage events on disk: ``events.jsonl``, its rotated files ``events.jsonl.1`` (the newest) ..
``events.jsonl.N`` (the oldest), ``events.jsonl.delivered`` (``<key> <target>`` per line: which backend got which
event; the key is the SHA-1 of the event's line, so a note stays right whichever file holds the line) and
``events.jsonl.lock``; ``events.jsonl.sending`` keeps `lineage send` off the events a live run is delivering
(:class:`Sending`).

Every change (an append, a rotation, a note of a delivery, a trim) happens under an exclusive ``flock`` of the
lock file, so several processes (and threads) writing at once never tear or interleave a line, and a rotation,
made of renames only, never loses or doubles one. When an append leaves ``events.jsonl`` at ``max_bytes`` or more,
the files shift by one (``.1`` -> ``.2`` ...) and ``events.jsonl`` becomes ``.1``. Then the rotated files beyond
``keep`` are trimmed: a file is removed only when every event in it was delivered to every configured backend
(its notes in ``.delivered`` are removed with it); a file still holding undelivered events is kept, past
``keep``, with one warning per process, until `airduck lineage send` delivers them (send trims again). With no
backend configured the file is the destination itself, and the oldest files beyond ``keep`` are removed as any
rotated log's.

Readers take a snapshot under the lock (an open handle and the size of each file) and read it after releasing
it: renames and removals by other processes do not change what an open handle reads, and lines appended later lie
beyond the recorded size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from airduck.errors import Transient
from airduck.text import plural

log = logging.getLogger("airduck")

#: seconds to wait for the lock file before giving up (the lock is held for one append or one rotation)
LOCK_SECONDS = 30.0


class EventFileLocked(Transient):
    """The lock of the kept events file stayed taken (another process holds it)."""


def event_key(line: str) -> str:
    return hashlib.sha1(line.encode()).hexdigest()


def is_event(text: str) -> bool:
    """Whether a kept line is a whole event (a JSON object); not a blank line nor one torn by a write cut short
    (a full disk, a kill mid-write), which no backend would take and which must not hold up the others."""
    if not text.startswith("{"):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _sibling(file: Path, suffix: str) -> Path:
    return file.with_name(file.name + suffix)


@contextmanager
def locked(file: Path, seconds: float = LOCK_SECONDS) -> Iterator[None]:
    """Hold the exclusive lock of the kept events `file` (each call opens the lock file: threads wait too)."""
    import fcntl

    lock = _sibling(file, ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        deadline = time.monotonic() + seconds
        wait = 0.001
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EventFileLocked(f"{lock} stayed locked for {seconds:g}s",
                                          hint="another airduck process holds it; the event was not kept") from None
                time.sleep(wait)
                wait = min(wait * 2, 0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _flock(handle: BinaryIO | Any, mode: int, seconds: float) -> bool:
    """Take the flock `mode` on `handle`, waiting at most `seconds`; False if it stayed taken."""
    import fcntl

    deadline = time.monotonic() + seconds
    wait = 0.001
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(wait)
            wait = min(wait * 2, 0.05)


class Sending:
    """``<file>.sending``: held shared by each process delivering its events live (a run's emitter, from its first
    queued event until its queue is done), exclusively by `lineage send` while it reads what is delivered and what
    is kept. So `send` never takes an event that a live run still has queued for its backend (both would deliver
    it), and an emitter never waits longer than the moment `send` reads."""

    def __init__(self, events_file: Path) -> None:
        self.path = _sibling(events_file, ".sending")
        self._handle: Any = None

    def share(self, seconds: float = 5.0) -> None:
        """Hold it shared (a live sender); never fails: after `seconds` the emitter sends without it."""
        import fcntl

        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        if _flock(handle, fcntl.LOCK_SH, seconds):
            self._handle = handle
        else:
            handle.close()

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the handle releases its flock
            self._handle = None

    @contextmanager
    def exclusive(self, seconds: float) -> Iterator[bool]:
        """Hold it exclusively (no live sender); yields False if a live sender kept it past `seconds`."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as handle:
            got = _flock(handle, fcntl.LOCK_EX, seconds)
            try:
                yield got
            finally:
                if got:
                    fcntl.flock(handle, fcntl.LOCK_UN)


class Delivered:
    """The keys of events each backend got (``<file>.delivered``: ``<key> <target>`` per line)."""

    def __init__(self, events_file: Path) -> None:
        self.events_file = events_file
        self.path = _sibling(events_file, ".delivered")
        self._lock = threading.Lock()

    def add(self, key: str, target: str) -> None:
        with self._lock, locked(self.events_file):
            self._append(key, target)

    def _append(self, key: str, target: str) -> None:
        with self.path.open("a") as f:
            f.write(f"{key} {target}\n")

    def read(self) -> set[tuple[str, str]]:
        with locked(self.events_file):
            return self._read()

    def _read(self) -> set[tuple[str, str]]:
        if not self.path.is_file():
            return set()
        out = set()
        with self.path.open() as f:
            for line in f:
                key, _, target = line.rstrip("\n").partition(" ")
                if key:
                    out.add((key, target))
        return out

    def _forget(self, keys: set[str]) -> None:
        """Drop the notes of `keys` (their events' file was removed); under the lock."""
        if not keys or not self.path.is_file():
            return
        tmp = _sibling(self.path, ".tmp")
        with self.path.open() as src, tmp.open("w") as dst:
            for line in src:
                if line.partition(" ")[0] not in keys:
                    dst.write(line)
        os.replace(tmp, self.path)


class Snapshot:
    """The kept files as they were at one moment: open handles (oldest file first) and their sizes then."""

    def __init__(self, parts: list[tuple[Path, BinaryIO, int]]) -> None:
        self.parts = parts
        self.torn = 0  # lines read that are not a whole event (torn by a write cut short): skipped

    def lines(self) -> Iterator[str]:
        """Every kept event line, oldest first (each complete: appends are whole lines under the lock; a line torn
        by a write cut short is skipped and counted in `torn`)."""
        for _, handle, size in self.parts:
            handle.seek(0)
            left = size
            for raw in handle:
                if len(raw) > left:  # appended after the snapshot
                    break
                left -= len(raw)
                text = raw.decode(errors="replace").rstrip("\n")
                if is_event(text):
                    yield text
                elif text.strip():
                    self.torn += 1

    def close(self) -> None:
        for _, handle, _ in self.parts:
            handle.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """Append, rotate, trim and read the kept events `file` (see the module's docstring).

    `max_bytes`: rotate when the file reaches this size (0: never). `keep`: rotated files kept (more while some
    hold undelivered events). `targets`: the backends (as noted in ``.delivered``) an event must have reached
    before its file may be removed."""

    def __init__(self, file: Path, *, max_bytes: int = 0, keep: int = 5, targets: Sequence[str] = ()) -> None:
        self.file = file
        self.max_bytes = max(0, int(max_bytes))
        self.keep = max(1, int(keep))
        self.targets = list(targets)
        self.delivered = Delivered(file)
        self.sending = Sending(file)
        self.warnings: list[str] = []
        self._warned = False

    # -- the files --------------------------------------------------------------------------------
    def _nth(self, i: int) -> Path:
        return _sibling(self.file, f".{i}")

    def rotated(self) -> list[tuple[int, Path]]:
        """The rotated files as (number, path), newest (1) first."""
        prefix = self.file.name + "."
        out = []
        if self.file.parent.is_dir():
            for p in self.file.parent.iterdir():
                rest = p.name[len(prefix):] if p.name.startswith(prefix) else ""
                if rest.isdigit() and not rest.startswith("0"):
                    out.append((int(rest), p))
        return sorted(out)

    def files(self) -> list[Path]:
        """Every kept file, oldest first (``events.jsonl.N`` .. ``.1``, then ``events.jsonl``)."""
        return [p for _, p in reversed(self.rotated())] + ([self.file] if self.file.is_file() else [])

    # -- writing ----------------------------------------------------------------------------------
    def append(self, line: str) -> None:
        """Keep one event line; rotate when the file reached `max_bytes`."""
        data = memoryview((line + "\n").encode())
        with locked(self.file):
            fd = os.open(self.file, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                end = os.fstat(fd).st_size
                if end and os.pread(fd, 1, end - 1) != b"\n":  # a write cut short (a full disk, a kill): end it
                    data = memoryview(b"\n" + bytes(data))  # so this event is not glued to the torn one
                while data:
                    data = data[os.write(fd, data):]
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if self.max_bytes and size >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        for i, path in reversed(self.rotated()):  # the oldest first: no rename replaces a file
            os.rename(path, self._nth(i + 1))
        os.rename(self.file, self._nth(1))
        self._trim()

    def trim(self) -> None:
        """Remove the rotated files beyond `keep` whose events were all delivered (after `lineage send`)."""
        with locked(self.file):
            self._trim()

    def _trim(self) -> None:
        beyond = [(i, p) for i, p in self.rotated() if i > self.keep]
        if not beyond:
            return
        got = self.delivered._read() if self.targets else set()
        forget: set[str] = set()
        undelivered = 0
        for _, path in beyond:
            keys = set()
            missing = 0
            with path.open("rb") as f:
                for raw in f:
                    text = raw.decode(errors="replace").rstrip("\n")
                    if not is_event(text):  # blank, or torn by a write cut short: nothing to deliver
                        continue
                    key = event_key(text)
                    keys.add(key)
                    if any((key, t) not in got for t in self.targets):
                        missing += 1
            if missing:
                undelivered += missing
                continue
            path.unlink()
            forget |= keys
        self.delivered._forget(forget)
        for n, (i, path) in enumerate(self.rotated(), start=1):  # close the gaps: .1 .. .k again
            if i != n:
                os.rename(path, self._nth(n))
        if undelivered:
            self._warn(undelivered)

    def _warn(self, undelivered: int) -> None:
        if self._warned:
            return
        self._warned = True
        text = (f"{plural(undelivered, 'kept OpenLineage event')} no backend has got yet would be dropped by the "
                f"rotation (lineage.file_keep: {self.keep}): their files are kept beside {self.file} until "
                "`airduck lineage send` delivers them")
        self.warnings.append(text)
        log.warning(text)

    # -- reading ----------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Open every kept file under the lock (read it after: see :class:`Snapshot`)."""
        parts: list[tuple[Path, BinaryIO, int]] = []
        if not self.file.parent.is_dir():
            return Snapshot(parts)
        with locked(self.file):
            for path in self.files():
                try:
                    handle = path.open("rb")
                except FileNotFoundError:
                    continue
                parts.append((path, handle, os.fstat(handle.fileno()).st_size))
        return Snapshot(parts)

    def lines(self) -> list[str]:
        with self.snapshot() as snap:
            return list(snap.lines())
