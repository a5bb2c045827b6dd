"""The object store on a real S3 server: SeaweedFS (`weed mini`) started on free loopback ports."""

from __future__ import annotations

import hashlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airduck.storage import (
    ObjectNotFound,
    S3Settings,
    S3Store,
    StorageError,
    StorageUnreachable,
    open_store,
    setup_store,
)
from airduck.storage import s3 as s3_store
from airduck.storage.setup import lifecycle_rule_id

try:
    from tests.support.seaweed import S3Server, boto3_client, free_ports, process_alive, seaweedfs
except ModuleNotFoundError:  # the project root is not on sys.path (no tests/__init__.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.seaweed import S3Server, boto3_client, free_ports, process_alive, seaweedfs

VERSIONED_BUCKET = "airduck-versioned"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    workdir = tmp_path_factory.mktemp("seaweedfs")
    with seaweedfs(workdir) as server:
        assert process_alive(server.pid)
        yield server
    assert not process_alive(server.pid), "weed mini must be stopped when the fixture ends"


@pytest.fixture(scope="module")
def settings(s3: S3Server) -> S3Settings:
    return S3Settings(
        endpoint=s3.endpoint_url,
        region=s3.region,
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
    )


@pytest.fixture
def store(s3: S3Server, settings: S3Settings) -> S3Store:
    """A store under a fresh prefix of the test bucket, so tests never see each other's objects."""
    s = open_store(f"s3://{s3.bucket}/t-{uuid.uuid4().hex[:8]}/lake", settings)
    assert isinstance(s, S3Store)
    return s


@pytest.fixture(scope="module")
def versioned(s3: S3Server, settings: S3Settings) -> S3Store:
    s = open_store(f"s3://{VERSIONED_BUCKET}/data/", settings)
    assert isinstance(s, S3Store)
    steps = setup_store(s, versioning=True, noncurrent_days=None)
    assert [x.status for x in steps] == ["created", "created"], steps
    return s


def raw_keys(s3: S3Server, bucket: str, prefix: str = "") -> list[str]:
    response = boto3_client(s3).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


# -- round trips -------------------------------------------------------------------------------------


def test_put_get_head_exists_list_delete_round_trip(store: S3Store, s3: S3Server) -> None:
    result = store.put("raw/2024/a.json", b'{"a": 1}')
    assert result.key == "raw/2024/a.json"
    assert result.url == f"{store.url}raw/2024/a.json"
    assert result.size == 8
    assert result.etag == hashlib.md5(b'{"a": 1}').hexdigest()
    assert result.version_id is None, "an unversioned bucket reports no version id"

    # the object really is at bucket/prefix/key
    assert raw_keys(s3, s3.bucket, store.prefix) == [f"{store.prefix}raw/2024/a.json"]

    assert store.get("raw/2024/a.json") == b'{"a": 1}'
    assert store.exists("raw/2024/a.json")
    info = store.head("raw/2024/a.json")
    assert (info.key, info.size, info.etag) == ("raw/2024/a.json", 8, result.etag)
    assert info.last_modified is not None

    store.put("raw/2024/a.json", b"replaced!")
    assert store.get("raw/2024/a.json") == b"replaced!"
    assert store.head("raw/2024/a.json").size == 9

    store.delete("raw/2024/a.json")
    assert not store.exists("raw/2024/a.json")
    assert store.list() == []
    with pytest.raises(ObjectNotFound, match="does not exist"):
        store.get("raw/2024/a.json")
    with pytest.raises(ObjectNotFound):
        store.head("raw/2024/a.json")
    store.delete("raw/2024/a.json")  # deleting a missing key is not an error


def test_list_is_recursive_sorted_relative_and_scoped_to_the_prefix(
    store: S3Store, s3: S3Server, settings: S3Settings
) -> None:
    for key in ["b/2.txt", "a/bc/3.txt", "a/b/1.txt", "top.txt", "a/b/0.txt"]:
        store.put(key, key.encode())
    # a sibling prefix that starts with the same letters must not leak into the listing
    sibling = open_store(store.url.rstrip("/") + "-sibling/", settings)
    sibling.put("intruder.txt", b"x")

    assert [o.key for o in store.list()] == ["a/b/0.txt", "a/b/1.txt", "a/bc/3.txt", "b/2.txt", "top.txt"]
    assert [o.key for o in store.list("a/b/")] == ["a/b/0.txt", "a/b/1.txt"]
    assert [o.key for o in store.list("a/b")] == ["a/b/0.txt", "a/b/1.txt", "a/bc/3.txt"]
    assert store.list("nothing/") == []
    assert {o.key: o.size for o in store.list()}["a/bc/3.txt"] == len(b"a/bc/3.txt")
    assert [o.key for o in sibling.list()] == ["intruder.txt"]


def test_list_paginates_past_one_page(store: S3Store) -> None:
    keys = [f"many/{i:04d}" for i in range(1005)]  # S3 pages hold 1000 keys
    for key in keys:
        store.put(key, b"")
    assert [o.key for o in store.list("many/")] == keys


def test_put_from_file_and_download(store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(2 * 1024 * 1024 + 3)
    src.write_bytes(payload)
    assert store.put("blobs/one-put.bin", src).size == len(payload)

    # files above the single-PUT limit go through boto3's managed (multipart-capable) upload
    monkeypatch.setattr(s3_store, "_SINGLE_PUT_LIMIT", 1024)
    result = store.put("blobs/managed.bin", src)
    assert result.size == len(payload)
    assert result.etag

    for key in ("blobs/one-put.bin", "blobs/managed.bin"):
        assert store.get(key) == payload
        dest = tmp_path / "out" / key.replace("/", "_")
        assert store.download(key, dest) == dest
        assert dest.read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blobs_managed.bin", "blobs_one-put.bin"]

    with pytest.raises(ObjectNotFound):
        store.download("blobs/missing.bin", tmp_path / "out" / "missing")
    assert not (tmp_path / "out" / "missing").exists()


def test_list_versions_on_unversioned_bucket(store: S3Store) -> None:
    assert store.versioning_enabled() is False
    store.put("k", b"1")
    store.put("k", b"22")
    versions = store.list_versions("k")
    assert [(v.size, v.version_id) for v in versions] == [(2, None)]


# -- versions ----------------------------------------------------------------------------------------


def test_versioned_bucket_keeps_old_versions(versioned: S3Store, tmp_path: Path) -> None:
    assert versioned.versioning_enabled() is True
    first = versioned.put("table/part-0.parquet", b"version one")
    second = versioned.put("table/part-0.parquet", b"version two!")
    versioned.put("table/part-0.parquet.other", b"same prefix, other key")
    assert first.version_id and second.version_id
    assert first.version_id != second.version_id

    versions = versioned.list_versions("table/part-0.parquet")
    assert [v.version_id for v in versions] == [second.version_id, first.version_id], "newest first"
    assert [v.size for v in versions] == [len(b"version two!"), len(b"version one")]
    assert {v.key for v in versions} == {"table/part-0.parquet"}

    assert versioned.get("table/part-0.parquet") == b"version two!"
    assert versioned.get("table/part-0.parquet", version_id=first.version_id) == b"version one"
    dest = versioned.download("table/part-0.parquet", tmp_path / "old.parquet", version_id=first.version_id)
    assert dest.read_bytes() == b"version one"
    assert versioned.head("table/part-0.parquet").version_id == second.version_id

    # deleting keeps the history: the key is gone, its versions are not
    versioned.delete("table/part-0.parquet")
    assert not versioned.exists("table/part-0.parquet")
    assert versioned.get("table/part-0.parquet", version_id=first.version_id) == b"version one"
    assert len(versioned.list_versions("table/part-0.parquet")) == 2


def test_check_writable_on_versioned_bucket_leaves_no_trace(versioned: S3Store, s3: S3Server) -> None:
    versioned.check_writable()
    response = boto3_client(s3).list_object_versions(Bucket=versioned.bucket, Prefix=versioned.prefix)
    leftovers = [
        v["Key"]
        for v in response.get("Versions", []) + response.get("DeleteMarkers", [])
        if "probe" in v["Key"]
    ]
    assert leftovers == []


# -- keys can never leave the root -------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", ""])
def test_escaping_keys_are_rejected(store: S3Store, s3: S3Server, key: str) -> None:
    before = raw_keys(s3, s3.bucket)
    for op in (
        lambda: store.put(key, b"evil"),
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.list_versions(key),
    ):
        with pytest.raises(StorageError) as err:
            op()
        assert repr(key) in str(err.value)
    assert raw_keys(s3, s3.bucket) == before, "nothing may be written to the bucket"


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["secret", "access_key"])
def test_wrong_credentials_give_a_clear_error_without_the_secret(
    s3: S3Server, store: S3Store, which: str
) -> None:
    wrong_secret = "Wr0ng-" + uuid.uuid4().hex
    settings = S3Settings(
        endpoint=s3.endpoint_url,
        access_key_id=s3.access_key_id if which == "secret" else "AKNOTAKEY0000",
        secret_access_key=wrong_secret if which == "secret" else s3.secret_access_key,
    )
    bad = open_store(store.url, settings)
    for op in (lambda: bad.put("x", b"1"), bad.list, lambda: bad.get("x"), bad.check_writable):
        with pytest.raises(StorageError) as err:
            op()
        message = str(err.value)
        assert "S3 rejected the credentials for s3://" in message
        assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in message
        expected_code = "SignatureDoesNotMatch" if which == "secret" else "InvalidAccessKeyId"
        assert f"({expected_code})" in message
        for secret in (wrong_secret, s3.secret_access_key):
            assert secret not in message
            assert secret not in repr(err.value)
        assert "\n" not in message
    assert store.list() == [], "the rejected put wrote nothing"


def test_unreachable_endpoint_fails_fast(store: S3Store) -> None:
    (port,) = free_ports(1)  # nothing listens there
    endpoint = f"http://127.0.0.1:{port}"
    bad = open_store(
        store.url, S3Settings(endpoint=endpoint, access_key_id="AK", secret_access_key="secret-xyz")
    )
    started = time.monotonic()
    with pytest.raises(StorageUnreachable) as err:
        bad.put("x", b"1")
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert str(err.value).startswith(f"cannot reach S3 endpoint {endpoint}")
    assert "secret-xyz" not in str(err.value)
    assert err.value.transient


def test_missing_bucket_says_run_setup(s3: S3Server, settings: S3Settings, tmp_path: Path) -> None:
    store = open_store("s3://no-such-bucket-here/lake/", settings)
    for op in (
        store.list,
        lambda: store.get("a"),
        lambda: store.head("a"),
        lambda: store.exists("a"),
        lambda: store.download("a", tmp_path / "a"),
        lambda: store.put("a", b"1"),
    ):
        with pytest.raises(
            StorageError, match="bucket no-such-bucket-here does not exist: run `airduck setup`"
        ):
            op()
    assert "no-such-bucket-here" not in {b["Name"] for b in boto3_client(s3).list_buckets()["Buckets"]}


# -- setup -------------------------------------------------------------------------------------------


def test_setup_creates_bucket_versioning_and_lifecycle_idempotently(
    s3: S3Server, settings: S3Settings
) -> None:
    bucket = "airduck-setup-" + uuid.uuid4().hex[:8]
    client = boto3_client(s3)
    store = open_store(f"s3://{bucket}/lake/", settings)
    assert isinstance(store, S3Store)

    steps = setup_store(store, versioning=True, noncurrent_days=7)
    assert [(s.action, s.status) for s in steps] == [
        ("create bucket", "created"),
        ("enable versioning", "created"),
        ("expire noncurrent versions after 7 days", "created"),
    ], steps
    assert steps[0].target == f"s3://{bucket}/"
    assert steps[2].target == f"s3://{bucket}/lake/"

    assert bucket in {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert len(rules) == 1
    assert rules[0]["ID"] == lifecycle_rule_id(store)
    assert rules[0]["Status"] == "Enabled"
    assert rules[0]["Filter"]["Prefix"] == "lake/"
    assert rules[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7

    again = setup_store(store, versioning=True, noncurrent_days=7)
    assert [s.status for s in again] == ["ok", "ok", "ok"], again

    # the store works and keeps versions now
    first = store.put("k", b"1")
    store.put("k", b"2")
    assert store.get("k", version_id=first.version_id) == b"1"

    # a rule someone else set on another prefix survives; ours is updated in place
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                *rules,
                {
                    "ID": "theirs",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "tmp/"},
                    "Expiration": {"Days": 1},
                },
            ]
        },
    )
    changed = setup_store(store, versioning=True, noncurrent_days=30)
    assert [s.status for s in changed] == ["ok", "ok", "created"], changed
    by_id = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(by_id) == {lifecycle_rule_id(store), "theirs"}
    assert by_id[lifecycle_rule_id(store)]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert by_id["theirs"]["Expiration"]["Days"] == 1


def test_setup_without_versioning_only_ensures_the_bucket(s3: S3Server, settings: S3Settings) -> None:
    bucket = "airduck-plain-" + uuid.uuid4().hex[:8]
    store = open_store(f"s3://{bucket}/", settings)
    steps = setup_store(store, versioning=False, noncurrent_days=None)
    assert [(s.action, s.status) for s in steps] == [("create bucket", "created")]
    assert boto3_client(s3).get_bucket_versioning(Bucket=bucket).get("Status") is None
    assert [s.status for s in setup_store(store, versioning=False, noncurrent_days=None)] == ["ok"]
    store.check_writable()
    assert store.list() == []


def test_setup_reports_bad_credentials_as_failed_step(s3: S3Server) -> None:
    store = open_store(
        "s3://airduck-never/",
        S3Settings(endpoint=s3.endpoint_url, access_key_id=s3.access_key_id, secret_access_key="nope-nope"),
    )
    steps = setup_store(store, versioning=True, noncurrent_days=7)
    assert [(s.action, s.status) for s in steps] == [("create bucket", "failed")]
    assert "rejected the credentials" in steps[0].detail
    assert "nope-nope" not in steps[0].detail
