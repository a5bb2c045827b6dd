"""Unstructured objects over any :class:`ObjectStore` (the API's `/objects`): keys that cannot escape, streamed
uploads with a size limit, ranged downloads, versions where the bucket keeps them.

Keys are checked twice: here, for what a URL can smuggle (percent-encoded escapes such as ``%2e%2e`` or ``%2f``,
control characters, overlong keys), then by the store (``..``, absolute, backslash, NUL, empty segments, and on a
local folder symlinks that lead out of it).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from airduck.errors import StorageError, StorageFailed
from airduck.storage.base import ObjectInfo, ObjectNotFound, ObjectStore, PutResult, validate_key

#: the longest key accepted (S3's limit)
MAX_KEY_BYTES = 1024
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidObjectKey(StorageFailed):
    """An object key that could reach outside the store (or is not a key at all)."""


class ObjectTooLarge(StorageFailed):
    """An upload over the size limit; nothing was written."""


def check_key(key: str, *, prefix: bool = False) -> str:
    """`key` if it is a safe object key (or listing prefix), else :class:`InvalidObjectKey` naming why."""
    reason = None
    if not isinstance(key, str):
        reason = "it is not text"
    elif len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        reason = f"it is longer than {MAX_KEY_BYTES} bytes"
    elif _PERCENT.search(key):
        reason = "it holds a percent-encoded character (send the key itself, encoded once in the URL)"
    elif _CONTROL.search(key):
        reason = "it holds a control character"
    if reason:
        raise InvalidObjectKey(f"invalid object key {key!r}: {reason}")
    try:
        return validate_key(key, prefix=prefix)
    except StorageError as exc:
        raise InvalidObjectKey(exc.message, hint=exc.hint) from None


@dataclass
class Objects:
    """The objects of one store (`Lakehouse.objects()`)."""

    store: ObjectStore

    @property
    def url(self) -> str:
        return self.store.url

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.store.list(check_key(prefix, prefix=True))

    def head(self, key: str) -> ObjectInfo:
        try:
            return self.store.head(check_key(key))
        except ObjectNotFound:
            raise ObjectNotFound(f"no object {key!r}", hint="list them with GET /api/v1/objects?prefix=") from None

    def versions(self, key: str) -> list[ObjectInfo]:
        """Stored versions, newest first (one, without a version id, on a store that keeps none)."""
        return self.store.list_versions(check_key(key))

    @property
    def versioned(self) -> bool:
        return self.store.versioning_enabled()

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> PutResult:
        """Write `chunks` to `key` through a temporary file (memory stays flat whatever the size); more than
        `max_bytes` raises :class:`ObjectTooLarge` and writes nothing."""
        check_key(key)
        fd, tmp = tempfile.mkstemp(prefix="airduck-upload-")
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ObjectTooLarge(f"the object is larger than the limit of {max_bytes:,} bytes",
                                             hint="raise api.max_upload_mb in airduck.yml")
                    out.write(chunk)
            return self.store.put(key, Path(tmp))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def open(self, key: str, start: int = 0, end: int | None = None,
             version_id: str | None = None) -> Iterator[bytes]:
        """The bytes `start`..`end` (inclusive) of `key`, streamed."""
        check_key(key)
        try:
            return self.store.stream(key, start, end, version_id)
        except ObjectNotFound:
            raise ObjectNotFound(f"no object {key!r}" + (f" version {version_id!r}" if version_id else "")) from None

    def delete(self, key: str) -> bool:
        """Delete `key` (its current version, on a versioned bucket); False when there was none."""
        check_key(key)
        existed = self.store.exists(key)
        if existed:
            self.store.delete(key)
        return existed
