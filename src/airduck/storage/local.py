"""The local-folder backend: objects as files under a folder, written atomically."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airduck.errors import StorageError
from airduck.storage.base import _TMP_PREFIX, ObjectInfo, ObjectNotFound, ObjectStore, PutResult, validate_key


def copy_file(src: Any, out: Any) -> None:
    """Copy an open file into another from their starts: in the kernel (copy_file_range) where the file systems
    allow it, else through Python buffers. Measured on 1 GB (ext4): 0.66 s instead of 2.26 s."""
    out.flush()
    copy = getattr(os, "copy_file_range", None)
    if copy is not None:
        try:
            remaining = os.fstat(src.fileno()).st_size
            while remaining > 0:
                n = copy(src.fileno(), out.fileno(), min(remaining, 1 << 30))
                if n == 0:
                    break
                remaining -= n
            if remaining <= 0:
                return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.EBADF):
                raise
        # not possible here (another file system, an old kernel) or the file shrank: start again in Python
        out.seek(0)
        out.truncate()
    src.seek(0)
    shutil.copyfileobj(src, out, 1024 * 1024)


def _chunks(src: Any, start: int, end: int | None, chunk: int) -> Iterator[bytes]:
    with src:
        src.seek(start)
        left = None if end is None else end + 1 - start
        while left is None or left > 0:
            data = src.read(chunk if left is None else min(chunk, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data


class LocalStore(ObjectStore):
    """Objects as files under a local folder. Writes are atomic (temp file + ``os.replace``).

    The folder is created on the first write. Files keep no etag and no versions.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = self.root.as_posix().rstrip("/") + "/"

    # -- helpers

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*validate_key(key).split("/"))
        # a symlink inside the folder must not lead out of it (the key is checked, the link's target too)
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise StorageError(f"invalid object key {key!r}: it leads outside the store's folder (a symlink)")
        return path

    def _inside(self, path: Path) -> bool:
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def _no_versions(self, key: str, version_id: str | None) -> None:
        if version_id is not None:
            raise StorageError(
                f"cannot read version {version_id!r} of {self.url_for(key)}: a local folder keeps no "
                "versions (use an S3 bucket with versioning)"
            )

    def _os_error(self, exc: OSError, action: str, target: str | Path) -> StorageError:
        if isinstance(exc, PermissionError):
            return StorageError(
                f"cannot {action} {target}: permission denied: fix the folder's permissions "
                "or point the lake at a folder you can write"
            )
        reason = exc.strerror or str(exc)
        return StorageError(f"cannot {action} {target}: {reason}")

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=None,
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
            version_id=None,
        )

    def _atomic_write(self, path: Path, write: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- interface

    def put(self, key: str, data: bytes | Path) -> PutResult:
        path = self._path(key)
        try:
            if isinstance(data, Path):
                with data.open("rb") as src:
                    self._atomic_write(path, lambda out: copy_file(src, out))
            else:
                payload = bytes(data)
                self._atomic_write(path, lambda out: out.write(payload))
            size = path.stat().st_size
        except FileNotFoundError as exc:
            if isinstance(data, Path) and not data.exists():
                raise StorageError(f"cannot upload {data}: the file does not exist") from exc
            raise self._os_error(exc, "write", path) from exc
        except OSError as exc:
            raise self._os_error(exc, "write", path) from exc
        return PutResult(key=key, url=self.url_for(key), size=size, etag=None, version_id=None)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        path = self._path(key)
        self._no_versions(key, version_id)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"object {path} does not exist") from exc
        except OSError as exc:
            raise self._os_error(exc, "read", path) from exc

    def download(self, key: str, dest: Path, version_id: str | None = None) -> Path:
        path = self._path(key)
        self._no_versions(key, version_id)
        dest = Path(dest)
        try:
            with path.open("rb") as src:
                self._atomic_write(dest, lambda out: shutil.copyfileobj(src, out, 1024 * 1024))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            if not path.is_file():
                raise ObjectNotFound(f"object {path} does not exist") from exc
            raise self._os_error(exc, "write", dest) from exc
        except OSError as exc:
            raise self._os_error(exc, f"copy {path} to", dest) from exc
        return dest

    def stream(self, key: str, start: int = 0, end: int | None = None, version_id: str | None = None,
               chunk: int = 1024 * 1024) -> Iterator[bytes]:
        path = self._path(key)
        self._no_versions(key, version_id)
        try:
            src = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"object {key} does not exist") from exc
        except OSError as exc:
            raise self._os_error(exc, "read", key) from exc
        return _chunks(src, start, end, chunk)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        validate_key(prefix, prefix=True)
        # Walk only the deepest folder the prefix names completely.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not start.is_dir() or not self._inside(start):
            return []  # a prefix through a symlink leading out of the folder lists nothing of what is out there
        found: list[ObjectInfo] = []
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames.sort()
                rel_dir = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith(_TMP_PREFIX):
                        continue  # an in-flight (or crashed) atomic write
                    key = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if not key.startswith(prefix):
                        continue
                    if os.path.islink(os.path.join(dirpath, name)) and not self._inside(Path(dirpath) / name):
                        continue  # a symlink to a file outside the folder is not an object of it
                    with contextlib.suppress(FileNotFoundError):  # deleted while listing
                        found.append(self._info(key, Path(dirpath) / name))
        except OSError as exc:
            raise self._os_error(exc, "list", start) from exc
        return sorted(found, key=lambda info: info.key)

    def list_versions(self, key: str) -> list[ObjectInfo]:
        try:
            return [self.head(key)]
        except ObjectNotFound:
            return []

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._os_error(exc, "delete", path) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"object {path} does not exist")
        try:
            return self._info(key, path)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"object {path} does not exist") from exc
        except OSError as exc:
            raise self._os_error(exc, "read", path) from exc

    def url_for(self, key: str) -> str:
        return self._path(key).as_posix()

    def versioning_enabled(self) -> bool:
        return False

    def ensure_folder(self) -> bool:
        """Create the root folder; True if it did not exist before."""
        if self.root.is_dir():
            return False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._os_error(exc, "create folder", self.root) from exc
        return True

    def check_writable(self) -> None:
        try:
            super().check_writable()
        except StorageError as exc:
            raise StorageError(
                f"the lake folder {self.url} is not writable: {exc.message}", hint=exc.hint
            ) from exc
