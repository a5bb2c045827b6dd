"""The `serve:` part of airduck.yml: marts published to PostgreSQL and exported as files."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from airduck.config.base import Model


class ServedTable(Model):
    table: str = Field(description="gold table, e.g. gold.salary_by_skill")
    name: str | None = Field(None, description="target table name (default: the gold table's name)")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
            raise ValueError("a served table name holds only letters, digits and '_' (at most 63), "
                             "and starts with a letter or '_'")
        return value
    primary_key: list[str] = Field(default_factory=list)
    indexes: list[list[str]] = Field(default_factory=list)


def _tables(value: object) -> object:
    if isinstance(value, list):
        return [{"table": v} if isinstance(v, str) else v for v in value]
    return value


class PostgresServe(Model):
    dsn: str
    schema_: str = Field("public", alias="schema")
    tables: list[ServedTable] = Field(default_factory=list)
    lock_timeout_ms: int = Field(2000, ge=1, description="how long the swap may wait for readers' locks")
    swap_attempts: int = Field(5, ge=1, description="tries of the swap transaction on lock timeouts")

    _norm = field_validator("tables", mode="before")(lambda cls, v: _tables(v))


class ExportServe(Model):
    path: str = Field(description="local folder or s3://bucket/prefix/")
    format: list[Literal["parquet", "delta"]] = Field(default_factory=lambda: ["parquet"])
    tables: list[ServedTable] = Field(default_factory=list)

    _norm = field_validator("tables", mode="before")(lambda cls, v: _tables(v))


class ServeConfig(Model):
    postgres: PostgresServe | None = None
    export: ExportServe | None = None
