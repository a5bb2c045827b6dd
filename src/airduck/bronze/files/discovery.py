"""Finding a `files` source's inputs: the glob (local or ``s3://``), the format of each file, its version."""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from airduck.bronze import state
from airduck.bronze.config import FilesSource
from airduck.config.secrets import redact
from airduck.core.context import RunContext
from airduck.errors import ConfigError, SourceError, StorageError
from airduck.storage import ObjectStore, open_store

_WILDCARD = re.compile(r"[*?\[]")
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".json": "json", ".ndjson": "ndjson",
    ".jsonl": "ndjson", ".parquet": "parquet", ".pq": "parquet",
}
_COMPRESSION = (".gz", ".gzip", ".zst")
_DIGEST_CHUNK = 4 * 1024 * 1024  # read into one buffer: no new bytes object per chunk


@dataclass
class Candidate:
    """One file matched by the glob."""

    path: str  # s3:// URL, local path relative to the project (absolute outside it): `_source_file`, the state key
    rel: str  # path below the glob's fixed folder (the landing key's tail)
    size: int
    etag: str | None
    local: Path | None = None  # local files
    store: ObjectStore | None = None  # S3 files
    key: str | None = None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob relative to a folder: `*` and `?` stay within a path segment, `**/` spans folders."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def split_glob(path: str) -> tuple[str, str]:
    """(fixed folder, pattern below it): `data/*/x.csv` -> ('data', '*/x.csv'); no wildcard -> (parent, name)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if _WILDCARD.search(part):
            return "/".join(parts[:i]), "/".join(parts[i:])
    return "/".join(parts[:-1]), parts[-1]


def discover(ctx: RunContext, name: str, cfg: FilesSource) -> list[Candidate]:
    if cfg.path.startswith("s3://"):
        return _discover_s3(ctx, name, cfg.path)
    if "://" in cfg.path:
        raise ConfigError(f"sources.{name}.path: unsupported URL {cfg.path!r}", hint="use a local glob or s3://bucket/prefix/*.csv")
    return _discover_local(ctx, cfg.path)


def _searched(ctx: RunContext, cfg: FilesSource) -> str:
    """The glob as searched: an S3 URL as given (masked), a local path made absolute against the project."""
    if "://" in cfg.path:
        return redact(cfg.path)
    full = Path(cfg.path).expanduser()
    return (full if full.is_absolute() else ctx.project.root / full).as_posix()


def _discover_local(ctx: RunContext, pattern: str) -> list[Candidate]:
    full = Path(pattern).expanduser()
    if not full.is_absolute():
        full = ctx.project.root / full
    text = full.as_posix()
    if full.is_dir():
        text = text.rstrip("/") + "/*"
    base, _ = split_glob(text)
    root = ctx.project.root.resolve()
    found: list[Candidate] = []
    for match in sorted(globlib.glob(text, recursive=True)):
        p = Path(match)
        if not p.is_file():
            continue
        st = p.stat()
        rel = os.path.relpath(p, base or "/").replace(os.sep, "/")
        found.append(Candidate(_state_path(p.resolve(), root), rel, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}",
                               local=p))
    return found


def _state_path(path: Path, root: Path) -> str:
    """How a local file is named in bronze and its state: relative to the project folder when it is inside it, so a
    copied or moved project recognizes the files it has ingested; absolute otherwise."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _discover_s3(ctx: RunContext, name: str, url: str) -> list[Candidate]:
    from airduck.lake.connection import storage_settings

    bucket, _, rest = url[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"sources.{name}.path: {url!r} names no bucket", hint="use s3://bucket/prefix/*.csv")
    base, pattern = split_glob(rest.rstrip("/") + ("/*" if rest.endswith("/") or not rest else ""))
    store = open_store(f"s3://{bucket}/{base}", storage_settings(ctx.project))
    literal = _WILDCARD.split(pattern, maxsplit=1)[0]
    regex = glob_regex(pattern)
    try:
        objects = store.list(literal)
    except StorageError as exc:
        raise SourceError(f"source {name}: cannot list {redact(url)}: {exc.message}", hint=exc.hint) from None
    return [
        Candidate(store.url_for(o.key), o.key, o.size, o.etag, store=store, key=o.key)
        for o in objects
        if regex.match(o.key)
    ]


def file_format(cfg: FilesSource, path: str) -> str:
    if cfg.format:
        return cfg.format
    lower = path.lower()
    for ext in _COMPRESSION:
        if lower.endswith(ext):
            lower = lower[: -len(ext)]
    return _EXTENSIONS.get(Path(lower).suffix, "csv")


def previous_version(previous: dict[str, state.FileState], cand: Candidate, root: Path) -> state.FileState | None:
    """The version of this file ingested last, if any."""
    prev = previous.get(cand.path)
    if prev is None and cand.local is not None:  # named by its absolute path by airduck before 2026-12
        prev = previous.get(str(root.resolve() / cand.path))
    return prev


def listed_unchanged(prev: state.FileState | None, cand: Candidate) -> bool:
    """Whether the listing alone (size and etag) shows the file is the version ingested last: skipped unread."""
    return prev is not None and prev.size == cand.size and cand.etag is not None and prev.etag == cand.etag


def _digest(path: Path, count: bytes | None) -> tuple[str, int]:
    """The sha256 of a file and how often the byte `count` occurs in it (0 when `count` is None)."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(_DIGEST_CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while got := f.readinto(buf):
            h.update(view[:got])
            if count is not None:
                n += buf.count(count, 0, got)
    return h.hexdigest(), n
