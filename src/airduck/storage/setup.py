"""Preparing a store for the lake: the bucket (or folder), versioning, and a lifecycle rule.

``setup_store`` is idempotent: run twice, the second run reports every step as ``ok``. What a store
cannot do (a local folder has no versions; some S3 servers answer ``NotImplemented``) is reported
as ``unsupported``, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airduck.errors import StorageError
from airduck.storage.base import ObjectStore
from airduck.storage.local import LocalStore
from airduck.storage.s3 import S3Store

__all__ = ["SetupStep", "lifecycle_rule_id", "setup_store"]

OK = "ok"
CREATED = "created"
UNSUPPORTED = "unsupported"
FAILED = "failed"


@dataclass(frozen=True)
class SetupStep:
    """One thing ``setup_store`` checked or changed."""

    target: str  # the bucket / folder URL
    action: str  # e.g. "create bucket", "enable versioning"
    status: str  # "ok" | "created" | "unsupported" | "failed"
    detail: str


def lifecycle_rule_id(store: S3Store) -> str:
    """The ID of the lifecycle rule airduck manages for ``store``'s prefix."""
    scope = store.prefix.rstrip("/") or "bucket"
    return f"airduck-noncurrent-{scope}"[:255]


def setup_store(store: ObjectStore, *, versioning: bool, noncurrent_days: int | None) -> list[SetupStep]:
    """Create the bucket/folder, enable versioning and expire old versions after ``noncurrent_days``.

    Returns one step per action. Steps that fail are reported with status ``failed`` and the
    reason; once the bucket or folder itself fails, the later steps are not attempted.
    """
    if noncurrent_days is not None and (
        isinstance(noncurrent_days, bool) or not isinstance(noncurrent_days, int) or noncurrent_days < 1
    ):
        raise StorageError(f"noncurrent_days must be a whole number of days >= 1, got {noncurrent_days!r}")
    if isinstance(store, LocalStore):
        return _setup_local(store, versioning=versioning, noncurrent_days=noncurrent_days)
    if isinstance(store, S3Store):
        return _setup_s3(store, versioning=versioning, noncurrent_days=noncurrent_days)
    raise StorageError(f"setup is not supported for {type(store).__name__} ({store.url})")


def _lifecycle_action(days: int) -> str:
    return f"expire noncurrent versions after {days} day{'s' if days != 1 else ''}"


# --------------------------------------------------------------------------------------------------
# local folder


def _setup_local(store: LocalStore, *, versioning: bool, noncurrent_days: int | None) -> list[SetupStep]:
    steps: list[SetupStep] = []
    try:
        created = store.ensure_folder()
        store.check_writable()
    except StorageError as exc:
        return [SetupStep(store.url, "create folder", FAILED, exc.message)]
    steps.append(
        SetupStep(
            store.url,
            "create folder",
            CREATED if created else OK,
            "created the folder" if created else "the folder exists and is writable",
        )
    )
    if versioning:
        steps.append(
            SetupStep(
                store.url,
                "enable versioning",
                UNSUPPORTED,
                "a local folder keeps no object versions; use an S3 bucket for versioning",
            )
        )
    if noncurrent_days is not None:
        steps.append(
            SetupStep(
                store.url,
                _lifecycle_action(noncurrent_days),
                UNSUPPORTED,
                "a local folder has no lifecycle rules (and no old versions to expire)",
            )
        )
    return steps


# --------------------------------------------------------------------------------------------------
# S3


def _unsupported(exc: StorageError) -> bool:
    return getattr(exc, "code", None) in ("NotImplemented", "501")


def _setup_s3(store: S3Store, *, versioning: bool, noncurrent_days: int | None) -> list[SetupStep]:
    bucket_url = f"s3://{store.bucket}/"
    steps: list[SetupStep] = []
    try:
        created = False if store.bucket_exists() else store.create_bucket()
    except StorageError as exc:
        return [SetupStep(bucket_url, "create bucket", FAILED, exc.message)]
    steps.append(
        SetupStep(
            bucket_url,
            "create bucket",
            CREATED if created else OK,
            f"created bucket {store.bucket}" if created else f"bucket {store.bucket} exists",
        )
    )
    if versioning:
        steps.append(_enable_versioning(store, bucket_url))
    if noncurrent_days is not None:
        steps.append(_noncurrent_rule(store, bucket_url, noncurrent_days))
    return steps


def _enable_versioning(store: S3Store, bucket_url: str) -> SetupStep:
    action = "enable versioning"
    try:
        if store.versioning_enabled():
            return SetupStep(bucket_url, action, OK, "versioning is enabled")
        store._call(
            "enable versioning on",
            bucket_url,
            store.client.put_bucket_versioning,
            Bucket=store.bucket,
            VersioningConfiguration={"Status": "Enabled"},
        )
        if not store.versioning_enabled():
            return SetupStep(
                bucket_url,
                action,
                UNSUPPORTED,
                "the S3 server accepted the request but versioning is still off",
            )
    except StorageError as exc:
        if _unsupported(exc):
            return SetupStep(
                bucket_url, action, UNSUPPORTED, "this S3 server does not support bucket versioning"
            )
        return SetupStep(bucket_url, action, FAILED, exc.message)
    return SetupStep(
        bucket_url, action, CREATED, "enabled versioning: overwritten objects keep older versions"
    )


def _rule_matches(rule: dict[str, Any], wanted: dict[str, Any]) -> bool:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    return (
        rule.get("Status") == "Enabled"
        and (prefix or "") == wanted["Filter"]["Prefix"]
        and rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
        == wanted["NoncurrentVersionExpiration"]["NoncurrentDays"]
    )


def _noncurrent_rule(store: S3Store, bucket_url: str, days: int) -> SetupStep:
    action = _lifecycle_action(days)
    target = store.url
    wanted = {
        "ID": lifecycle_rule_id(store),
        "Status": "Enabled",
        "Filter": {"Prefix": store.prefix},
        "NoncurrentVersionExpiration": {"NoncurrentDays": days},
    }
    try:
        rules = _lifecycle_rules(store, bucket_url)
        mine = [rule for rule in rules if rule.get("ID") == wanted["ID"]]
        if len(mine) == 1 and _rule_matches(mine[0], wanted):
            return SetupStep(target, action, OK, f"lifecycle rule {wanted['ID']} is in place")
        # Keep every rule someone else put on the bucket; replace only ours.
        others = [_clean_rule(rule) for rule in rules if rule.get("ID") != wanted["ID"]]
        store._call(
            "set the lifecycle rules of",
            bucket_url,
            store.client.put_bucket_lifecycle_configuration,
            Bucket=store.bucket,
            LifecycleConfiguration={"Rules": [*others, wanted]},
        )
        mine = [rule for rule in _lifecycle_rules(store, bucket_url) if rule.get("ID") == wanted["ID"]]
        if len(mine) != 1 or not _rule_matches(mine[0], wanted):
            return SetupStep(
                target, action, UNSUPPORTED, "the S3 server accepted the lifecycle rule but does not keep it"
            )
    except StorageError as exc:
        if _unsupported(exc):
            return SetupStep(target, action, UNSUPPORTED, "this S3 server does not support lifecycle rules")
        return SetupStep(target, action, FAILED, exc.message)
    return SetupStep(target, action, CREATED, f"set lifecycle rule {wanted['ID']}")


def _lifecycle_rules(store: S3Store, bucket_url: str) -> list[dict[str, Any]]:
    try:
        response = store._call(
            "read the lifecycle rules of",
            bucket_url,
            store.client.get_bucket_lifecycle_configuration,
            Bucket=store.bucket,
        )
    except StorageError as exc:
        if getattr(exc, "code", None) == "NoSuchLifecycleConfiguration":
            return []
        raise
    return list(response.get("Rules", []))


_RULE_FIELDS = (
    "ID",
    "Status",
    "Filter",
    "Prefix",
    "Expiration",
    "Transitions",
    "NoncurrentVersionTransitions",
    "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload",
)


def _clean_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as read back, reduced to the fields boto3 accepts when writing it again."""
    return {name: rule[name] for name in _RULE_FIELDS if name in rule}
