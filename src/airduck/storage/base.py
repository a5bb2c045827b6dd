"""Object storage rooted at a URL: a local folder or an ``s3://bucket/prefix/`` on any S3-compatible store.

The lake's landing zone, unstructured files and bucket setup go through :class:`ObjectStore`, so the
rest of airduck never cares whether the project runs on a laptop or on a team's S3. Keys are always
relative to the store's root and validated so that no key can reach outside it.

This module holds what every backend shares: the interface, its value objects, its errors and key validation.
The backends are :mod:`airduck.storage.local` and :mod:`airduck.storage.s3`; :func:`airduck.storage.open_store`
(:mod:`airduck.storage.location`) picks one from a URL.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from airduck.errors import StorageError, StorageFailed, StorageUnavailable

_MASK = "***"
_TMP_PREFIX = ".airduck-tmp-"
_PROBE_PREFIX = ".airduck-probe-"


class ObjectNotFound(StorageFailed):
    """The object (or the requested version of it) does not exist."""


class StorageUnreachable(StorageUnavailable):
    """The S3 endpoint could not be reached (refused, timed out, DNS): worth retrying later."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object (or one version of it). ``key`` is relative to the store's root."""

    key: str
    size: int
    etag: str | None
    last_modified: datetime | None
    version_id: str | None = None


@dataclass(frozen=True)
class PutResult:
    """What a write produced. ``version_id`` is set on versioned buckets only."""

    key: str
    url: str
    size: int
    etag: str | None
    version_id: str | None


def validate_key(key: str, *, prefix: bool = False) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`StorageError` naming it.

    Refused: absolute keys, ``.``/``..`` segments, backslashes, NUL and empty segments (``a//b``,
    a trailing ``/``). With ``prefix=True`` the empty string and one trailing ``/`` are allowed
    (a listing prefix such as ``landing/2024/``).
    """
    if not isinstance(key, str):
        raise StorageError(f"object key must be a string, got {type(key).__name__}")
    body = key
    if prefix:
        if body == "":
            return key
        if body.endswith("/"):
            body = body[:-1]
    reason = None
    if body == "":
        reason = "it is empty"
    elif "\x00" in body:
        reason = "it contains a NUL character"
    elif "\\" in body:
        reason = "it contains a backslash (use / between folders)"
    elif body.startswith("/"):
        reason = "it is absolute (keys are relative to the store's root)"
    else:
        for segment in body.split("/"):
            if segment == "":
                reason = "it has an empty path segment (//)"
            elif segment in (".", ".."):
                reason = f"it has a '{segment}' segment (keys cannot leave the store's root)"
            if reason:
                break
    if reason:
        raise StorageError(f"invalid object key {key!r}: {reason}")
    return key


class ObjectStore(ABC):
    """Objects under one root URL. Keys are relative to the root and use ``/`` between folders."""

    url: str  # the root URL, normalised, ending in "/"

    @abstractmethod
    def put(self, key: str, data: bytes | Path) -> PutResult:
        """Write ``data`` (bytes, or the contents of a file) to ``key``, replacing it atomically."""

    @abstractmethod
    def get(self, key: str, version_id: str | None = None) -> bytes:
        """The bytes of ``key`` (or of one version of it). :class:`ObjectNotFound` if missing."""

    @abstractmethod
    def download(self, key: str, dest: Path, version_id: str | None = None) -> Path:
        """Copy ``key`` to the local file ``dest`` (parents are created); returns ``dest``."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """All objects whose key starts with ``prefix`` (recursive), sorted by key."""

    @abstractmethod
    def list_versions(self, key: str) -> list[ObjectInfo]:
        """The stored versions of ``key``, newest first (empty if it never existed)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``. :class:`ObjectNotFound` if missing."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """The full URL (S3) or absolute path (local) of ``key``."""

    @abstractmethod
    def versioning_enabled(self) -> bool:
        """Whether writes keep older versions (bucket versioning)."""

    def stream(self, key: str, start: int = 0, end: int | None = None, version_id: str | None = None,
               chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """The bytes ``start``..``end`` (inclusive; None: to the end) of ``key``, in chunks, without holding the
        whole object. Backends override it; this default reads the object once."""
        data = self.get(key, version_id)
        stop = len(data) if end is None else min(len(data), end + 1)
        for pos in range(start, stop, chunk):
            yield data[pos:min(stop, pos + chunk)]

    def check_writable(self) -> None:
        """Write, read back and delete a probe object; :class:`StorageError` naming the fix if that fails."""
        key = f"{_PROBE_PREFIX}{uuid.uuid4().hex}"
        payload = b"airduck probe " + key.encode()
        result = self.put(key, payload)
        try:
            if self.get(key, result.version_id) != payload:
                raise StorageError(f"{self.url} returned different bytes than were written to {key}")
        finally:
            self._delete_probe(key, result.version_id)

    def _delete_probe(self, key: str, version_id: str | None) -> None:
        self.delete(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
