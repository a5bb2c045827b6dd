"""Landing: the raw bytes of each new or changed file copied as received into the landing zone, hashed on the way."""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from airduck.bronze import state
from airduck.bronze.files.discovery import Candidate, _digest
from airduck.bronze.table import base_params
from airduck.core.context import RunContext
from airduck.errors import SourceError, StorageError
from airduck.storage import LocalStore, validate_key

T = TypeVar("T")


def landing_key(source: str, load_id: str, rel: str, taken: set[str] | None = None) -> str:
    """`<source>/<load_id>/<rel>`, made a valid key; a key already in `taken` (two paths that read the same once
    made valid, like `a\\b.csv` and `a_b.csv`) gets `~2`, `~3` ... before its extensions, so no copy replaces another."""
    key = f"{source}/{load_id}/{rel}"
    try:
        key = validate_key(key)
    except StorageError:
        safe = "/".join(re.sub(r"[^A-Za-z0-9._=-]", "_", seg) or "_" for seg in rel.split("/") if seg not in ("", ".", ".."))
        key = validate_key(f"{source}/{load_id}/{safe or 'file'}")
    if taken is None or key not in taken:
        return key
    folder, _, name = key.rpartition("/")
    stem, dot, exts = name.partition(".")
    n = 2
    while f"{folder}/{stem}~{n}{dot}{exts}" in taken:
        n += 1
    return f"{folder}/{stem}~{n}{dot}{exts}"


@dataclass
class FileResult:
    path: str
    rows: int = 0
    rejects: int = 0
    landing_key: str | None = None
    version: str | None = None
    new_columns: list[str] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "rows": self.rows, "rejects": self.rejects, "landing_key": self.landing_key}
        if self.note:
            d["note"] = self.note
        return d


#: files landed (copied, hashed) at once, ahead of the one being read: the copy and the hash of one file take
#: about one core, so two at once use both cores (10 files / 1 GB: 2.8 s one at a time)
LAND_AHEAD = 2


def _ahead(fn: Callable[[Any], T], items: list[Any], ahead: int) -> Iterator[T]:
    """fn(item) for each item, in order, computed on `ahead` threads up to `ahead` items before they are used."""
    if ahead <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="airduck-land") as pool:
        pending: deque[Future[T]] = deque()
        rest = iter(items)
        try:
            for item in itertools.islice(rest, ahead):
                pending.append(pool.submit(fn, item))
            while pending:
                done = pending.popleft().result()
                nxt = next(rest, None)
                if nxt is not None:
                    pending.append(pool.submit(fn, nxt))
                yield done
        finally:
            for fut in pending:
                fut.cancel()


@dataclass
class Landed:
    """A new or changed file whose bytes are in the landing zone, ready to be read."""

    cand: Candidate
    local: Path  # the bytes as received: the source file, or a downloaded copy of an S3 object
    read_path: Path  # what DuckDB reads: the landing copy when the landing zone is local
    size: int
    digest: str
    version_id: str | None  # object version of the source on a versioned bucket
    key: str  # landing key
    landing_version_id: str | None
    groupable: bool = False  # may be read by a group scan (see _group_quote)

    @property
    def source_version(self) -> str:
        return self.version_id or self.digest

    def params(self, ctx: RunContext, name: str) -> dict[str, Any]:
        return {**base_params(ctx, name), "path": str(self.read_path), "src_file": self.cand.path,
                "src_version": self.source_version, "landing": self.key}

    def result(self) -> FileResult:
        return FileResult(self.cand.path, landing_key=self.key, version=self.source_version)


def _land(ctx: RunContext, name: str, cand: Candidate, prev: state.FileState | None, tmp: Path,
          index: int, key: str, quote: bytes | bool = False) -> Landed | None:
    """Copy a candidate to the landing zone under `key` (downloading it first from S3); None if its bytes are
    unchanged. `quote` (see _group_quote) decides whether the file may be read by a group scan."""
    version_id: str | None = None
    if cand.local is not None:
        local = cand.local
    else:
        assert cand.store is not None and cand.key is not None
        try:
            info = cand.store.head(cand.key)
            version_id = info.version_id
            local = cand.store.download(cand.key, tmp / f"{index:06d}" / Path(cand.key).name, version_id)
        except StorageError as exc:
            raise SourceError(f"source {name}: cannot download {cand.path}: {exc.message}", hint=exc.hint) from None
    try:
        size = local.stat().st_size
        counted = quote if isinstance(quote, bytes) else None
        if prev is None or prev.size != size:
            # certainly a new version: hash on a second thread while the bytes are copied (both release the GIL)
            with ThreadPoolExecutor(max_workers=1) as pool:
                hashing = pool.submit(_digest, local, counted)
                put = _put_landing(ctx, name, cand, key, local)
                digest, quotes = hashing.result()
        else:
            digest, quotes = _digest(local, counted)
            if state.unchanged(prev, size, None, digest):
                _drop_download(cand, local)
                return None
            put = _put_landing(ctx, name, cand, key, local)
    except BaseException:
        _drop_download(cand, local)
        raise
    read_path = Path(ctx.landing.url_for(key)) if isinstance(ctx.landing, LocalStore) else local
    groupable = quote is True or (counted is not None and quotes % 2 == 0)
    return Landed(cand, local, read_path, size, digest, version_id, key, put.version_id,
                  groupable)


def _put_landing(ctx: RunContext, name: str, cand: Candidate, key: str, local: Path) -> Any:
    try:
        return ctx.landing.put(key, local)
    except StorageError as exc:
        raise StorageError(f"source {name}: cannot copy {cand.path} to the landing zone: {exc.message}",
                           hint=exc.hint) from None


def _drop_download(cand: Candidate, local: Path) -> None:
    if cand.local is None:  # a downloaded copy: the landing zone keeps the bytes
        local.unlink(missing_ok=True)
