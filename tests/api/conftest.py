"""A served lake per combination (module scope: one lake, one pipeline run, one app per combination and file).

Each project has three configured tokens (read, write, admin) in airduck.yml as ``${ENV}`` values (from its .env),
the orders pipeline of the run tests run once, and its objects in a folder (sqlite-local, pg-local) or on S3 in a
versioned bucket (pg-s3).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import PG_BASE, pg_dsn_for, s3_env
from tests.integration.test_pipeline_runs import orders_config, write_orders

TOKENS = {"read": "read-token-" + "r" * 24, "write": "write-token-" + "w" * 24, "admin": "admin-token-" + "a" * 24}
UPLOAD_LIMIT_MB = 0.5  # 524288 bytes


@dataclass
class Served:
    combo: str
    root: Path
    app: Any
    client: TestClient
    env: dict[str, str]

    def h(self, role: str = "read") -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[role]}"}

    def get(self, url: str, role: str = "read", **kw: Any):
        return self.client.get(url, headers={**self.h(role), **kw.pop("headers", {})}, **kw)

    def post(self, url: str, role: str = "read", **kw: Any):
        return self.client.post(url, headers={**self.h(role), **kw.pop("headers", {})}, **kw)


def _database() -> str:
    name = f"airduck_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop(name: str) -> None:
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", [name])
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _versioned_bucket(server: Any) -> str:
    from tests.support.seaweed import boto3_client

    bucket = "airduck-objects-" + uuid.uuid4().hex[:8]
    client = boto3_client(server)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def make_project(tmp: Path, combo: str, request: pytest.FixtureRequest, dbs: list[str]) -> tuple[Path, dict]:
    root = tmp / combo
    root.mkdir()
    config: dict[str, Any] = {"name": "api_test", **orders_config()}
    env = {f"TOKEN_{role.upper()}": value for role, value in TOKENS.items()}
    lake: dict[str, Any] = {}
    if combo != "sqlite-local":
        db = _database()
        dbs.append(db)
        lake["catalog"] = pg_dsn_for(db)
    if combo == "pg-s3":
        server = request.getfixturevalue("s3_server")
        prefix = f"s3://{server.bucket}/{uuid.uuid4().hex[:12]}"
        lake.update(data_path=f"{prefix}/data/", landing=f"{prefix}/landing/",
                    objects=f"s3://{_versioned_bucket(server)}/objects/")
        env.update(s3_env(server))
    config["lake"] = lake
    config["api"] = {"tokens": {f"{role}er": {"token": f"${{TOKEN_{role.upper()}}}", "role": role}
                                for role in TOKENS}, "max_upload_mb": UPLOAD_LIMIT_MB, "sql_timeout_seconds": 3}
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    write_orders(root, "day1.csv", 0, 300, negative_every=50)
    return root, env


def serve_project(root: Path) -> tuple[Any, TestClient]:
    from airduck.api.app import create_app
    from airduck.lakehouse import Lakehouse

    with Lakehouse.open(root) as lh:
        lh.run()
    app = create_app(root)
    return app, TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module", params=["sqlite-local", "pg-local", "pg-s3"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _served(request, tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def local_served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _served(request, tmp_path_factory, "sqlite-local")


def _served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, combo: str) -> Iterator[Served]:
    dbs: list[str] = []
    mp = pytest.MonkeyPatch()
    for var in ("AIRDUCK_API_TOKEN",):
        mp.delenv(var, raising=False)
    try:
        root, env = make_project(tmp_path_factory.mktemp("api"), combo, request, dbs)
        app, client = serve_project(root)
        with client:
            yield Served(combo, root, app, client, env)
    finally:
        mp.undo()
        for db in dbs:
            _drop(db)
