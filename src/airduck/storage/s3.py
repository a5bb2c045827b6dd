"""The S3 backend: ``s3://bucket/prefix/`` on AWS S3 or any S3-compatible store, through boto3 (imported lazily).

Credentials come from :class:`S3Settings` only (never from or into URLs) and never appear in a ``repr``, a log
line or an error message.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airduck.errors import StorageError
from airduck.storage.base import (
    _MASK,
    _TMP_PREFIX,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PutResult,
    StorageUnreachable,
    validate_key,
)

if TYPE_CHECKING:  # boto3 is imported lazily: `airduck --help` must start fast
    from botocore.client import BaseClient

# Above this size a file is sent with a multipart upload instead of one PUT.
_SINGLE_PUT_LIMIT = 64 * 1024 * 1024
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "AuthorizationHeaderMalformed",
        "InvalidSecurity",
    }
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible store. Built by the config layer from ``airduck.yml``/env."""

    endpoint: str | None = None  # "host:port" or "http(s)://host:port"; None = AWS default
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None  # never printed: see __repr__
    url_style: str = "path"  # "path" | "vhost"
    use_ssl: bool | None = None  # None: from the endpoint's scheme (http:// -> False), else True

    def __post_init__(self) -> None:
        if self.url_style not in ("path", "vhost"):
            raise StorageError(f"S3 url_style must be 'path' or 'vhost', got {self.url_style!r}")

    def __repr__(self) -> str:
        secret = _MASK if self.secret_access_key else None
        return (
            f"S3Settings(endpoint={self.endpoint!r}, region={self.region!r}, "
            f"access_key_id={self.access_key_id!r}, secret_access_key={secret!r}, "
            f"url_style={self.url_style!r}, use_ssl={self.use_ssl!r})"
        )

    __str__ = __repr__

    @property
    def ssl(self) -> bool:
        """Whether to use TLS: ``use_ssl`` if set, else the endpoint's scheme, else True."""
        if self.use_ssl is not None:
            return self.use_ssl
        return not (self.endpoint and self.endpoint.lower().startswith("http://"))

    @property
    def endpoint_host(self) -> str | None:
        """The endpoint without scheme or trailing slash (``host:port``), as DuckDB's S3 secret wants it."""
        if not self.endpoint:
            return None
        host = self.endpoint.strip()
        if "://" in host:
            host = host.split("://", 1)[1]
        return host.rstrip("/")

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint as a URL with scheme (``http(s)://host:port``), or None for AWS."""
        host = self.endpoint_host
        if not host:
            return None
        return f"{'https' if self.ssl else 'http'}://{host}"


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix/`` on AWS S3 or any S3-compatible store (boto3)."""

    def __init__(self, bucket: str, prefix: str = "", settings: S3Settings | None = None) -> None:
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
            prefix += "/"
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings or S3Settings()
        self.url = f"s3://{bucket}/{prefix}"
        self._client: BaseClient | None = None
        self._lock = threading.Lock()

    # -- client and errors

    @property
    def client(self) -> BaseClient:
        """The boto3 S3 client (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> BaseClient:
        import boto3
        from botocore.config import Config

        s = self.settings
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path" if s.url_style == "path" else "virtual"},
            "connect_timeout": 5,
            "read_timeout": 60,
            "retries": {"mode": "standard", "max_attempts": 3},  # the first try + 2 retries
        }
        if s.endpoint:
            # S3-compatible servers often reject the optional CRC checksums newer boto3 sends.
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        try:
            return boto3.session.Session().client(
                "s3",
                endpoint_url=s.endpoint_url,
                region_name=s.region,
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key,
                config=Config(**options),
            )
        except Exception as exc:  # bad endpoint URL, bad region name ...
            raise StorageError(self._scrub(f"cannot configure the S3 client for {self.url}: {exc}")) from None

    def _scrub(self, text: str) -> str:
        secret = self.settings.secret_access_key
        if secret:
            text = text.replace(secret, _MASK)
        return text

    def _error(self, exc: Exception, action: str, url: str | None = None) -> StorageError:
        """Translate a botocore exception into a one-line StorageError naming the fix.

        The S3 error code (``NoSuchBucket``, ``AccessDenied`` ...) is kept as ``error.code``.
        """
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
            ReadTimeoutError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        url = url or self.url
        endpoint = self.settings.endpoint_url or "the AWS S3 endpoint"
        cls: type[StorageError] = StorageError
        code: str | None = None
        if isinstance(exc, ReadTimeoutError):
            cls, message = (
                StorageUnreachable,
                f"S3 endpoint {endpoint} did not answer in time ({action} {url})",
            )
        elif isinstance(exc, BotoConnectionError | ConnectionClosedError):
            cls = StorageUnreachable
            message = (
                f"cannot reach S3 endpoint {endpoint}: {exc}: check the lake's S3 endpoint "
                "and that the server is running"
            )
        elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
            message = (
                f"no S3 credentials for {url}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "(or the lake's S3 credentials in airduck.yml)"
            )
        elif isinstance(exc, ParamValidationError):
            message = f"invalid S3 request ({action} {url}): {exc}"
        elif isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.get("Code") or status)
            detail = error.get("Message") or ""
            if code in _CREDENTIAL_CODES:
                message = (
                    f"S3 rejected the credentials for {url} ({code}): "
                    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                )
            elif code == "NoSuchBucket":
                message = f"bucket {self.bucket} does not exist: run `airduck setup`"
            elif code in _NOT_FOUND_CODES:
                cls, message = ObjectNotFound, f"object {url} does not exist"
            elif code in ("AccessDenied", "403", "AllAccessDisabled", "Forbidden"):
                message = (
                    f"S3 denied {action} on {url} ({code}): give these credentials access "
                    f"to bucket {self.bucket}"
                )
            elif code in ("NotImplemented", "501") or status == 501:
                message = f"the S3 server at {endpoint} does not support {action} (NotImplemented)"
            elif code in ("SlowDown", "ServiceUnavailable", "503", "InternalError", "500"):
                cls = StorageUnreachable
                message = f"S3 {action} failed for {url} ({code}): the server is busy, retry later"
            else:
                message = f"S3 {action} failed for {url} ({code})" + (f": {detail}" if detail else "")
        else:
            message = f"S3 {action} failed for {url}: {type(exc).__name__}: {exc}"
        err = cls(self._scrub(" ".join(message.split())))
        err.code = code  # type: ignore[attr-defined]
        return err

    def _call(self, action: str, url: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            err = self._error(exc, action, url)
        if getattr(err, "code", None) == "403":
            err = self._explain_forbidden(err)
        raise err

    def _explain_forbidden(self, err: StorageError) -> StorageError:
        """HEAD requests get a bare 403 (no body): ask again with a GET to learn why.

        The bucket listing's error says whether the credentials are wrong, the bucket is missing,
        or access is really denied.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except (BotoCoreError, ClientError) as exc:
            detailed = self._error(exc, "list", self.url)
            if getattr(detailed, "code", None) not in ("403", "AccessDenied"):
                return detailed
        return err

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _missing(self, key: str) -> StorageError:
        """A 404 on an object: say whether the bucket or the object is missing."""
        if not self.bucket_exists():
            return StorageError(f"bucket {self.bucket} does not exist: run `airduck setup`")
        return ObjectNotFound(f"object {self.url_for(key)} does not exist")

    @staticmethod
    def _version(value: str | None) -> str | None:
        # Unversioned buckets report the version id "null".
        return None if value in (None, "", "null") else value

    @staticmethod
    def _etag(value: str | None) -> str | None:
        return value.strip('"') if value else None

    # -- interface

    def put(self, key: str, data: bytes | Path) -> PutResult:
        full = self._full(key)
        url = self.url_for(key)
        if isinstance(data, Path):
            try:
                size = data.stat().st_size
            except OSError as exc:
                raise StorageError(f"cannot upload {data}: {exc.strerror or exc}") from exc
            if size > _SINGLE_PUT_LIMIT:
                self._call(
                    "upload", url, self.client.upload_file, Filename=str(data), Bucket=self.bucket, Key=full
                )
                info = self.head(key)
                return PutResult(key, url, info.size, info.etag, info.version_id)
            with data.open("rb") as body:
                response = self._call(
                    "write", url, self.client.put_object, Bucket=self.bucket, Key=full, Body=body
                )
        else:
            payload = bytes(data)
            size = len(payload)
            response = self._call(
                "write", url, self.client.put_object, Bucket=self.bucket, Key=full, Body=payload
            )
        return PutResult(
            key=key,
            url=url,
            size=size,
            etag=self._etag(response.get("ETag")),
            version_id=self._version(response.get("VersionId")),
        )

    def get(self, key: str, version_id: str | None = None) -> bytes:
        full = self._full(key)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if version_id:
            kwargs["VersionId"] = version_id

        def fetch() -> bytes:
            return self.client.get_object(**kwargs)["Body"].read()

        try:
            return self._call("read", self.url_for(key), fetch)
        except ObjectNotFound:
            raise self._missing(key) from None

    def stream(self, key: str, start: int = 0, end: int | None = None, version_id: str | None = None,
               chunk: int = 1024 * 1024) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full(key)}
        if version_id:
            kwargs["VersionId"] = version_id
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            body = self._call("read", self.url_for(key), lambda: self.client.get_object(**kwargs)["Body"])
        except ObjectNotFound:
            raise self._missing(key) from None

        def chunks() -> Iterator[bytes]:
            with contextlib.closing(body):
                while data := body.read(chunk):
                    yield data

        return chunks()

    def download(self, key: str, dest: Path, version_id: str | None = None) -> Path:
        full = self._full(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        extra = {"VersionId": version_id} if version_id else None
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
        os.close(fd)
        try:
            try:
                self._call(
                    "download",
                    self.url_for(key),
                    self.client.download_file,
                    Bucket=self.bucket,
                    Key=full,
                    Filename=tmp,
                    ExtraArgs=extra,
                )
            except ObjectNotFound:
                raise self._missing(key) from None
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return dest

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        validate_key(prefix, prefix=True)
        paginator = self.client.get_paginator("list_objects_v2")
        found: list[ObjectInfo] = []

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if not key or key.endswith("/"):
                        continue  # folder markers some tools create
                    found.append(
                        ObjectInfo(
                            key=key,
                            size=int(item.get("Size", 0)),
                            etag=self._etag(item.get("ETag")),
                            last_modified=item.get("LastModified"),
                        )
                    )

        self._call("list", self.url + prefix, collect)
        return sorted(found, key=lambda info: info.key)

    def list_versions(self, key: str) -> list[ObjectInfo]:
        full = self._full(key)
        paginator = self.client.get_paginator("list_object_versions")
        found: list[tuple[bool, ObjectInfo]] = []

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Versions", []):
                    if item["Key"] != full:
                        continue
                    info = ObjectInfo(
                        key=key,
                        size=int(item.get("Size", 0)),
                        etag=self._etag(item.get("ETag")),
                        last_modified=item.get("LastModified"),
                        version_id=self._version(item.get("VersionId")),
                    )
                    found.append((bool(item.get("IsLatest")), info))

        self._call("list versions of", self.url_for(key), collect)
        epoch = datetime.min.replace(tzinfo=UTC)
        found.sort(key=lambda pair: (pair[0], pair[1].last_modified or epoch), reverse=True)
        return [info for _, info in found]

    def delete(self, key: str) -> None:
        self._call(
            "delete", self.url_for(key), self.client.delete_object, Bucket=self.bucket, Key=self._full(key)
        )

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def head(self, key: str) -> ObjectInfo:
        full = self._full(key)
        try:
            response = self._call(
                "read", self.url_for(key), self.client.head_object, Bucket=self.bucket, Key=full
            )
        except ObjectNotFound:
            raise self._missing(key) from None
        return ObjectInfo(
            key=key,
            size=int(response.get("ContentLength", 0)),
            etag=self._etag(response.get("ETag")),
            last_modified=response.get("LastModified"),
            version_id=self._version(response.get("VersionId")),
        )

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def versioning_enabled(self) -> bool:
        response = self._call(
            "read the versioning of",
            f"s3://{self.bucket}/",
            self.client.get_bucket_versioning,
            Bucket=self.bucket,
        )
        return response.get("Status") == "Enabled"

    def _delete_probe(self, key: str, version_id: str | None) -> None:
        if version_id is None:
            self.delete(key)
            return
        # On a versioned bucket a plain delete leaves the probe behind as a noncurrent version.
        self._call(
            "delete",
            self.url_for(key),
            self.client.delete_object,
            Bucket=self.bucket,
            Key=self._full(key),
            VersionId=version_id,
        )

    # -- bucket

    def bucket_exists(self) -> bool:
        """Whether the bucket exists (and these credentials may see it)."""
        try:
            self._call("open bucket", f"s3://{self.bucket}/", self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound:  # head_bucket answers a bare 404
            return False
        except StorageError as exc:
            if getattr(exc, "code", None) == "NoSuchBucket":
                return False
            raise
        return True

    def create_bucket(self) -> bool:
        """Create the bucket; True if it was created, False if it already existed."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        region = self.settings.region
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._call("create bucket", f"s3://{self.bucket}/", self.client.create_bucket, **kwargs)
        except StorageError as exc:
            if getattr(exc, "code", None) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise
        return True
