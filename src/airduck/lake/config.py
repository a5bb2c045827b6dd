"""The `lake:` part of airduck.yml: where the catalog, the data and the landing zone live."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from airduck.config.base import Model

#: time limit of a read-only query (`airduck sql`, `Lakehouse.sql`) unless airduck.yml or `--timeout` says otherwise
CLI_SQL_TIMEOUT_SECONDS = 300.0
#: time limit of read-only queries that come over the network (the REST API): stricter than the CLI's
API_SQL_TIMEOUT_SECONDS = 30.0
#: the longest time limit a query may be given (a week; a timer cannot be set much further out)
MAX_SQL_TIMEOUT_SECONDS = 7 * 24 * 3600.0


class S3Config(Model):
    """Connection to an S3-compatible store. Credentials come from here or from AWS_* variables."""

    endpoint: str | None = Field(None, description="host:port or http(s)://host:port; empty for AWS")
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    url_style: Literal["path", "vhost"] = "path"
    use_ssl: bool | None = None


class MaintenanceConfig(Model):
    """Defaults of `airduck maintain`."""

    expire_older_than_days: float = Field(7.0, ge=0)
    cleanup_older_than_days: float = Field(1.0, ge=0)
    target_file_size: str = "128MB"
    delete_threshold: float = Field(0.25, gt=0, le=1)


class LakeConfig(Model):
    catalog: str = ".airduck/catalog.sqlite"
    data_path: str = ".airduck/data/"
    landing: str = ".airduck/landing/"
    objects: str = Field(".airduck/objects/", description="where the unstructured objects of the API live (a "
                         "folder or s3://bucket/prefix/)")
    s3: S3Config = Field(default_factory=S3Config)
    landing_versioning: bool = True
    noncurrent_version_days: int | None = Field(30, ge=1)
    data_inlining_row_limit: int | None = Field(None, ge=0)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    sql_timeout_seconds: float = Field(CLI_SQL_TIMEOUT_SECONDS, ge=0, le=MAX_SQL_TIMEOUT_SECONDS,
                                       description="time limit of `airduck sql` queries; 0: no limit")


class BranchesConfig(Model):
    """`branches:` of airduck.yml (see docs/branches.md)."""

    protected: list[str] = Field(default_factory=list, description="branches only merges write to, e.g. [main]")
    keep_failed_days: float = Field(7.0, ge=0, description="how long the branch of a failed atomic run is kept")


class RunConfig(Model):
    """`run:` of airduck.yml."""

    atomic: bool = Field(False, description="write-audit-publish: run on a temporary branch, audit, merge in one commit")
