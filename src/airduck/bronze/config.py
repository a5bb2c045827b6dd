"""The `sources:` part of airduck.yml: each source lands raw in `bronze.<name>`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from airduck.config.base import Model
from airduck.config.staleness import FreshnessPolicy

FileFormat = Literal["csv", "tsv", "json", "ndjson", "parquet"]


class FilesSource(Model):
    """Files on disk or S3 matched by a glob; each file is ingested once (again when it changes)."""

    type: Literal["files"]
    freshness: FreshnessPolicy | None = Field(None, description="how old bronze.<name> may get: {warn_after: 6h, error_after: 24h}")
    path: str = Field(description="glob relative to the project, absolute, or s3://bucket/prefix/*.csv")
    format: FileFormat | None = Field(None, description="inferred from the file extension when omitted")
    delimiter: str | None = None
    header: bool = True
    encoding: Literal["utf-8", "latin-1", "utf-16"] = "utf-8"
    options: dict[str, Any] = Field(default_factory=dict, description="extra DuckDB reader options")
    allow_empty: bool = Field(False, description="a path that matches no file is fine, even on the first run "
                              "(else the first run fails: usually the path has a typo)")


class PostgresSource(Model):
    """A table or a query in a PostgreSQL database, read in bulk through DuckDB's postgres extension."""

    type: Literal["postgres"]
    freshness: FreshnessPolicy | None = Field(None, description="how old bronze.<name> may get: {warn_after: 6h, error_after: 24h}")
    dsn: str
    table: str | None = None
    query: str | None = None
    cursor: str | None = Field(None, description="column for incremental loads (e.g. updated_at, id)")

    @model_validator(mode="after")
    def _table_or_query(self) -> PostgresSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self


class Pagination(Model):
    style: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_param: str = "page"
    start_page: int = 1
    size_param: str | None = None
    page_size: int | None = Field(None, ge=1)
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str | None = Field(None, description="dotted path of the next cursor in the response")


class HttpSource(Model):
    """A JSON REST API, paged, with retries on 429/5xx and timeouts."""

    type: Literal["http"]
    freshness: FreshnessPolicy | None = Field(None, description="how old bronze.<name> may get: {warn_after: 6h, error_after: 24h}")
    url: str
    params: dict[str, str | int | float] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict, description="values may use ${VAR} for tokens")
    records_path: str | None = Field(None, description="dotted path of the record list in each response")
    pagination: Pagination = Field(default_factory=Pagination)
    max_pages: int = Field(1000, ge=1)
    timeout: float = Field(30.0, gt=0)
    retries: int = Field(5, ge=0)
    backoff: float = Field(0.5, ge=0)


Source = Annotated[FilesSource | PostgresSource | HttpSource, Field(discriminator="type")]
