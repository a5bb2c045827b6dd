"""The object store over a local folder, URL parsing and settings (no servers needed)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airduck.errors import AirduckError, Transient
from airduck.storage import (
    LocalStore,
    ObjectNotFound,
    S3Settings,
    S3Store,
    StorageError,
    StorageUnreachable,
    open_store,
    setup_store,
    validate_key,
)
from airduck.storage import local as local_store

BAD_KEYS = [
    "../x",
    "/etc/passwd",
    "a/../../b",
    "a/..",
    "..",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "",
    "a\\..\\b",
    "a\x00b",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "lake" / "landing"


@pytest.fixture
def store(root: Path) -> LocalStore:
    s = open_store(str(root))
    assert isinstance(s, LocalStore)
    return s


def files_under(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}


# -- round trips -------------------------------------------------------------------------------------


def test_put_get_head_exists_delete_round_trip(store: LocalStore, root: Path) -> None:
    assert not root.exists(), "opening a store must not create its folder"
    result = store.put("raw/2024/a.json", b'{"a": 1}')

    assert result.key == "raw/2024/a.json"
    assert result.size == 8
    assert result.version_id is None
    assert result.url == str(root / "raw" / "2024" / "a.json")
    assert (root / "raw" / "2024" / "a.json").read_bytes() == b'{"a": 1}'

    assert store.get("raw/2024/a.json") == b'{"a": 1}'
    assert store.exists("raw/2024/a.json")
    info = store.head("raw/2024/a.json")
    assert (info.key, info.size, info.version_id) == ("raw/2024/a.json", 8, None)
    assert info.last_modified is not None
    assert abs((datetime.now(UTC) - info.last_modified).total_seconds()) < 60

    store.put("raw/2024/a.json", b"replaced")
    assert store.get("raw/2024/a.json") == b"replaced"
    assert store.head("raw/2024/a.json").size == 8

    store.delete("raw/2024/a.json")
    assert not store.exists("raw/2024/a.json")
    assert store.list() == []
    store.delete("raw/2024/a.json")  # deleting a missing key is not an error


def test_put_from_file_and_download(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(3 * 1024 * 1024 + 7)
    src.write_bytes(payload)

    result = store.put("blobs/file.bin", src)
    assert result.size == len(payload)
    assert store.get("blobs/file.bin") == payload

    dest = tmp_path / "out" / "deep" / "copy.bin"
    assert store.download("blobs/file.bin", dest) == dest
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["copy.bin"], "no temp file left beside the download"


@pytest.mark.parametrize("failure", [None, "exdev", "partial"])
def test_put_from_file_copies_every_byte_in_the_kernel_or_in_python(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str | None
) -> None:
    """copy_file_range where the file system allows it; a refusal (another file system) or a failure after part
    of the file was copied starts again in Python, and the copy is still exact."""
    import errno

    src = tmp_path / "src.bin"
    payload = os.urandom(2 * 1024 * 1024 + 13)
    src.write_bytes(payload)
    calls: list[int] = []
    real = os.copy_file_range

    def flaky(fd_in: int, fd_out: int, count: int, *args: object) -> int:
        calls.append(count)
        if failure == "exdev":
            raise OSError(errno.EXDEV, "cross-device")
        if failure == "partial" and len(calls) > 1:
            raise OSError(errno.EINVAL, "invalid")
        return real(fd_in, fd_out, min(count, 1024 * 1024) if failure == "partial" else count)

    monkeypatch.setattr(os, "copy_file_range", flaky)
    store.put("blobs/copy.bin", src)
    assert store.get("blobs/copy.bin") == payload
    assert calls, "the kernel copy was tried first"


def test_list_is_recursive_sorted_and_relative(store: LocalStore) -> None:
    for key in ["b/2.txt", "a/bc/3.txt", "a/b/1.txt", "top.txt", "a/b/0.txt"]:
        store.put(key, key.encode())

    assert [o.key for o in store.list()] == ["a/b/0.txt", "a/b/1.txt", "a/bc/3.txt", "b/2.txt", "top.txt"]
    assert [o.key for o in store.list("a/b/")] == ["a/b/0.txt", "a/b/1.txt"]
    # a prefix is a string prefix, as on S3, not a folder name
    assert [o.key for o in store.list("a/b")] == ["a/b/0.txt", "a/b/1.txt", "a/bc/3.txt"]
    assert [o.key for o in store.list("to")] == ["top.txt"]
    assert store.list("nothing/") == []
    sizes = {o.key: o.size for o in store.list()}
    assert sizes["a/bc/3.txt"] == len(b"a/bc/3.txt")


def test_list_of_missing_folder_is_empty(tmp_path: Path) -> None:
    assert open_store(str(tmp_path / "never")).list() == []


def test_list_versions_local_has_one_current_version(store: LocalStore) -> None:
    assert store.list_versions("k") == []
    store.put("k", b"1")
    store.put("k", b"22")
    versions = store.list_versions("k")
    assert len(versions) == 1
    assert versions[0].version_id is None
    assert versions[0].size == 2
    assert store.versioning_enabled() is False


def test_reading_a_version_of_a_local_object_is_refused(store: LocalStore) -> None:
    store.put("k", b"1")
    with pytest.raises(StorageError, match="keeps no versions"):
        store.get("k", version_id="abc")


def test_missing_object_raises_object_not_found(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match="does not exist"):
        store.get("missing.txt")
    with pytest.raises(ObjectNotFound):
        store.head("missing.txt")
    with pytest.raises(ObjectNotFound):
        store.download("missing.txt", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not store.exists("missing.txt")
    assert issubclass(ObjectNotFound, StorageError)
    assert issubclass(StorageError, AirduckError)


# -- atomic writes -----------------------------------------------------------------------------------


def test_failed_write_keeps_old_content_and_leaves_no_temp_file(
    store: LocalStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("data.csv", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_store.os, "replace", broken_replace)
    with pytest.raises(StorageError, match="No space left on device"):
        store.put("data.csv", b"new")
    monkeypatch.undo()

    assert store.get("data.csv") == b"old"
    assert files_under(root) == {"data.csv"}, "the temp file of the failed write must be removed"


def test_listing_ignores_in_flight_temp_files(store: LocalStore, root: Path) -> None:
    store.put("a.txt", b"a")
    (root / f"{local_store._TMP_PREFIX}crashed").write_bytes(b"half")
    assert [o.key for o in store.list()] == ["a.txt"]


# -- keys can never leave the root -------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
def test_escaping_keys_are_rejected_everywhere(store: LocalStore, tmp_path: Path, key: str) -> None:
    operations = [
        lambda: store.put(key, b"evil"),
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.url_for(key),
        lambda: store.list_versions(key),
        lambda: store.download(key, tmp_path / "dl"),
    ]
    for op in operations:
        with pytest.raises(StorageError) as err:
            op()
        assert repr(key) in str(err.value), "the error must name the offending key"
    assert files_under(tmp_path) == set(), "nothing may be written anywhere"


@pytest.mark.parametrize("prefix", ["../", "/etc/", "a/../../", "a//"])
def test_escaping_list_prefixes_are_rejected(store: LocalStore, prefix: str) -> None:
    with pytest.raises(StorageError, match="invalid object key"):
        store.list(prefix)


def test_validate_key_accepts_normal_keys() -> None:
    for key in ["a", "a/b/c.parquet", "x..y", "..hidden", "dt=2024-01-01/part-0.parquet", "ü/ñ file"]:
        assert validate_key(key) == key
    assert validate_key("", prefix=True) == ""
    assert validate_key("a/b/", prefix=True) == "a/b/"


def test_escape_through_traversal_cannot_touch_a_sibling(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "lake"))
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"keep me")
    with pytest.raises(StorageError):
        store.delete("../secret.txt")
    with pytest.raises(StorageError):
        store.put("../secret.txt", b"overwritten")
    assert secret.read_bytes() == b"keep me"


# -- opening stores ----------------------------------------------------------------------------------


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    store = open_store(".airduck/data", base_dir=tmp_path)
    assert isinstance(store, LocalStore)
    assert store.url == f"{tmp_path.as_posix()}/.airduck/data/"
    assert store.url_for("x/y.parquet") == f"{tmp_path.as_posix()}/.airduck/data/x/y.parquet"
    store.put("x/y.parquet", b"1")
    assert (tmp_path / ".airduck" / "data" / "x" / "y.parquet").read_bytes() == b"1"


def test_url_is_normalised_with_one_trailing_slash(tmp_path: Path) -> None:
    assert open_store(f"{tmp_path}/a/../b//").url == f"{tmp_path.as_posix()}/b/"
    assert open_store(f"file://{tmp_path}/c").url == f"{tmp_path.as_posix()}/c/"
    assert open_store(f"file://localhost{tmp_path}/c").url == f"{tmp_path.as_posix()}/c/"


def test_file_url_with_a_host_is_refused() -> None:
    with pytest.raises(StorageError, match="names a host"):
        open_store("file://server/share")


@pytest.mark.parametrize("url", ["", "   ", "gs://bucket/x", "http://example.com/x"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(StorageError):
        open_store(url)


def test_s3_urls_open_an_s3_store_without_network() -> None:
    store = open_store("s3://bucket/lake/data", S3Settings(endpoint="http://127.0.0.1:1"))
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.url) == ("bucket", "lake/data/", "s3://bucket/lake/data/")
    assert store.url_for("t/a.parquet") == "s3://bucket/lake/data/t/a.parquet"
    assert open_store("s3://bucket").url == "s3://bucket/"
    assert open_store("s3://bucket/").url_for("k") == "s3://bucket/k"
    with pytest.raises(StorageError, match="invalid object key"):
        store.url_for("../other")


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3://b/a/../c", "s3://b/a//c"])
def test_bad_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(StorageError):
        open_store(url)


def test_credentials_in_s3_urls_are_refused_without_echoing_them() -> None:
    with pytest.raises(StorageError, match="credentials must not be written") as err:
        open_store("s3://AKID:sup3rs3cret@bucket/prefix/")
    assert "sup3rs3cret" not in str(err.value)


# -- settings ----------------------------------------------------------------------------------------


def test_s3_settings_repr_masks_the_secret() -> None:
    settings = S3Settings(
        endpoint="minio:9000", access_key_id="AKID", secret_access_key="hunter2-very-secret"
    )
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert "hunter2-very-secret" not in text
        assert "***" in text
    assert "AKID" in repr(settings)
    assert "secret_access_key=None" in repr(S3Settings())


@pytest.mark.parametrize(
    ("endpoint", "use_ssl", "url", "host", "ssl"),
    [
        (None, None, None, None, True),
        ("minio:9000", None, "https://minio:9000", "minio:9000", True),
        ("http://127.0.0.1:8333", None, "http://127.0.0.1:8333", "127.0.0.1:8333", False),
        ("https://s3.example.com/", None, "https://s3.example.com", "s3.example.com", True),
        ("127.0.0.1:8333", False, "http://127.0.0.1:8333", "127.0.0.1:8333", False),
    ],
)
def test_s3_settings_endpoint_derivation(
    endpoint: str | None, use_ssl: bool | None, url: str | None, host: str | None, ssl: bool
) -> None:
    settings = S3Settings(endpoint=endpoint, use_ssl=use_ssl)
    assert (settings.endpoint_url, settings.endpoint_host, settings.ssl) == (url, host, ssl)


def test_s3_settings_reject_unknown_url_style() -> None:
    with pytest.raises(StorageError, match="url_style"):
        S3Settings(url_style="virtual-ish")


def test_unreachable_is_a_transient_storage_error() -> None:
    assert issubclass(StorageUnreachable, StorageError)
    assert issubclass(StorageUnreachable, Transient)
    assert StorageUnreachable("x").transient is True
    assert StorageError("x").transient is False


# -- writability and setup ---------------------------------------------------------------------------


def test_check_writable_passes_and_leaves_nothing(store: LocalStore, root: Path) -> None:
    store.check_writable()
    assert root.is_dir()
    assert files_under(root) == set()


def test_check_writable_fails_with_the_folder_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    store = open_store(str(blocker / "lake"))
    with pytest.raises(StorageError, match="is not writable") as err:
        store.check_writable()
    assert str(blocker / "lake") in str(err.value)


def test_setup_local_creates_folder_and_reports_versioning_unsupported(store: LocalStore, root: Path) -> None:
    steps = setup_store(store, versioning=True, noncurrent_days=30)
    assert root.is_dir()
    assert [(s.action, s.status) for s in steps] == [
        ("create folder", "created"),
        ("enable versioning", "unsupported"),
        ("expire noncurrent versions after 30 days", "unsupported"),
    ]
    assert all(s.target == store.url for s in steps)
    assert "local folder" in steps[1].detail

    again = setup_store(store, versioning=True, noncurrent_days=30)
    assert [s.status for s in again] == ["ok", "unsupported", "unsupported"]

    plain = setup_store(store, versioning=False, noncurrent_days=None)
    assert [(s.action, s.status) for s in plain] == [("create folder", "ok")]


def test_setup_local_reports_failure_instead_of_raising(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    steps = setup_store(open_store(str(blocker / "lake")), versioning=True, noncurrent_days=None)
    assert [(s.action, s.status) for s in steps] == [("create folder", "failed")]
    assert str(blocker) in steps[0].detail


@pytest.mark.parametrize("days", [0, -1, 1.5, True])
def test_setup_rejects_bad_noncurrent_days(store: LocalStore, days: object) -> None:
    with pytest.raises(StorageError, match="noncurrent_days"):
        setup_store(store, versioning=True, noncurrent_days=days)  # type: ignore[arg-type]
