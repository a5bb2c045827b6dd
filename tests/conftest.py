"""Shared fixtures: a real PostgreSQL (the local service), a real S3 (SeaweedFS), and project factories.

Lake tests run on the three combinations users deploy, via the `lake_combo` fixture:
sqlite-local (embedded default), pg-local (PostgreSQL catalog, local data), pg-s3 (PostgreSQL catalog, S3 data).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.support.seaweed import S3Server, seaweedfs

PG_BASE = os.environ.get("AIRDUCK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
COMBOS = ("sqlite-local", "pg-local", "pg-s3")


def _pg_admin_dsn() -> str:
    return PG_BASE


def pg_dsn_for(db: str) -> str:
    """The base DSN with its database replaced by `db`."""
    head, _, tail = PG_BASE.rpartition("/")
    query = ""
    if "?" in tail:
        query = "?" + tail.split("?", 1)[1]
    return f"{head}/{db}{query}"


@pytest.fixture
def pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh PostgreSQL databases (DSNs); all are dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"airduck_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_pg_admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return pg_dsn_for(name)

    yield make
    with psycopg.connect(_pg_admin_dsn(), autocommit=True) as conn:
        for name in created:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS (`weed mini`) for the whole session, on free loopback ports, with credentials."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), bucket="airduck-test") as server:
        yield server


def s3_env(server: S3Server) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.secret_access_key,
        "AWS_REGION": server.region,
        "AIRDUCK_S3_ENDPOINT": server.endpoint_url,
    }


class ProjectFactory:
    """Writes projects for one lake combination. `make(config)` returns the project folder."""

    def __init__(self, combo: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.combo = combo
        self.tmp_path = tmp_path
        self.request = request
        self.count = 0

    def lake_section(self) -> tuple[dict[str, Any], dict[str, str]]:
        if self.combo == "sqlite-local":
            return {}, {}
        pg = self.request.getfixturevalue("pg_database")
        catalog = pg()
        if self.combo == "pg-local":
            return {"catalog": catalog}, {}
        server: S3Server = self.request.getfixturevalue("s3_server")
        prefix = f"s3://{server.bucket}/{uuid.uuid4().hex[:12]}"
        return {"catalog": catalog, "data_path": f"{prefix}/data/", "landing": f"{prefix}/landing/"}, s3_env(server)

    def make(self, config: dict[str, Any] | None = None, name: str | None = None) -> Path:
        self.count += 1
        root = self.tmp_path / (name or f"project{self.count}")
        root.mkdir(parents=True, exist_ok=True)
        lake, env = self.lake_section()
        data = {"name": "test", **(config or {})}
        data["lake"] = {**lake, **data.get("lake", {})}
        (root / "airduck.yml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        if env:
            (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        return root


@pytest.fixture(params=COMBOS)
def lake_combo(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def projects(lake_combo: str, tmp_path: Path, request: pytest.FixtureRequest) -> ProjectFactory:
    """Project factory on every lake combination (the test runs three times)."""
    return ProjectFactory(lake_combo, tmp_path, request)


@pytest.fixture
def local_projects(tmp_path: Path, request: pytest.FixtureRequest) -> ProjectFactory:
    """Project factory on the embedded default only (SQLite catalog, local data)."""
    return ProjectFactory("sqlite-local", tmp_path, request)


@pytest.fixture
def pg_s3_projects(tmp_path: Path, request: pytest.FixtureRequest) -> ProjectFactory:
    """Project factory on the team stack (PostgreSQL catalog, S3 data)."""
    return ProjectFactory("pg-s3", tmp_path, request)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's AIRDUCK_*/AWS_* variables."""
    for var in list(os.environ):
        if var.startswith(("AIRDUCK_", "AWS_")) and var != "AIRDUCK_TEST_PG_DSN":
            monkeypatch.delenv(var, raising=False)
