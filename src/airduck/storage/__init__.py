"""Object storage for the lake: a local folder or ``s3://bucket/prefix/`` on any S3-compatible store.

:mod:`.base` is the interface every backend implements (and key validation), :mod:`.local` and :mod:`.s3` the
backends, :mod:`.location` opens one from a URL, :mod:`.setup` prepares a bucket or folder for a lake.
"""

from airduck.errors import StorageError
from airduck.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PutResult,
    StorageUnreachable,
    validate_key,
)
from airduck.storage.local import LocalStore
from airduck.storage.location import open_store
from airduck.storage.s3 import S3Settings, S3Store
from airduck.storage.setup import SetupStep, setup_store

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
