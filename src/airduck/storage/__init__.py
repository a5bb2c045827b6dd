"""Object storage for the lake: a local folder or ``s3://bucket/prefix/`` on any S3-compatible store."""

from airduck.storage.setup import SetupStep, setup_store
from airduck.storage.store import (
    LocalStore,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PutResult,
    S3Settings,
    S3Store,
    StorageError,
    StorageUnreachable,
    open_store,
    validate_key,
)

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PutResult",
    "S3Settings",
    "S3Store",
    "SetupStep",
    "StorageError",
    "StorageUnreachable",
    "open_store",
    "setup_store",
    "validate_key",
]
