"""Opening a store from its location: a folder path, a ``file://`` URL or ``s3://bucket/prefix/``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from airduck.errors import StorageError
from airduck.storage.base import ObjectStore, validate_key
from airduck.storage.local import LocalStore
from airduck.storage.s3 import S3Settings, S3Store


def open_store(url: str, s3: S3Settings | None = None, base_dir: Path | None = None) -> ObjectStore:
    """The store rooted at ``url``: a local folder path, a ``file://`` URL, or ``s3://bucket/prefix/``.

    Relative local paths resolve against ``base_dir`` (the project folder; default: the current
    folder). Nothing is created until the first write. S3 credentials come from ``s3`` (or, when it
    has none, boto3's usual chain: env, profile, instance role), never from the URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError("storage URL is empty: give a folder path or s3://bucket/prefix/")
    url = url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "s3":
        parts = urlsplit(url)
        if "@" in parts.netloc or parts.password or parts.username:
            raise StorageError(
                "credentials must not be written into an s3:// URL: set them in the lake's S3 "
                "settings or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            )
        bucket = parts.netloc
        if not bucket:
            raise StorageError(f"storage URL {url!r} names no bucket: use s3://bucket/prefix/")
        if parts.query or parts.fragment:
            raise StorageError(f"storage URL {url!r} must not have a query or fragment")
        prefix = parts.path.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except StorageError:
                raise StorageError(
                    f"storage URL {url!r} has an invalid prefix (empty, '.' or '..' segments)"
                ) from None
        return S3Store(bucket, prefix, s3)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"file URL {url!r} names a host: use file:///absolute/path")
        return LocalStore(Path(unquote(parts.path)))
    if scheme:
        raise StorageError(
            f"unsupported storage URL {url!r}: use a folder path, file:///path or s3://bucket/prefix/"
        )
    path = Path(url).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else Path.cwd()) / path
    return LocalStore(path)
