"""Dataset names (OpenLineage's naming spec, no secrets), the `lineage:` / OPENLINEAGE_* settings, and the graph
of a small project (no run needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from airduck.core.model import Dataset, DatasetKind
from airduck.errors import ConfigError
from airduck.lakehouse import Lakehouse
from airduck.lineage.config import LineageConfig, resolve
from airduck.lineage.naming import dataset_name, lake_namespace
from tests.integration.test_pipeline_runs import orders_config

NS = "ducklake:///p/.airduck/catalog.sqlite"


def test_names_follow_the_openlineage_naming_spec():
    assert dataset_name(Dataset.lake("silver.orders"), NS) == (NS, "silver.orders")
    assert dataset_name(Dataset(DatasetKind.FILES, "data/o/*.csv", "/p/data/o/"), NS) == ("file", "/p/data/o/*.csv")
    assert dataset_name(Dataset(DatasetKind.FILES, "s3://bucket/in/*.json", "s3://bucket/in/"), NS) == (
        "s3://bucket", "in/*.json")
    assert dataset_name(Dataset(DatasetKind.POSTGRES, "sales.orders", "postgres://db.host:6543/shop"), NS) == (
        "postgres://db.host:6543", "shop.sales.orders")
    assert dataset_name(Dataset(DatasetKind.POSTGRES, "orders", "postgres://h:5432/shop"), NS) == (
        "postgres://h:5432", "shop.public.orders")
    assert dataset_name(Dataset(DatasetKind.POSTGRES_MART, "marts.daily", "postgres://h:5432/bi"), NS) == (
        "postgres://h:5432", "bi.marts.daily")
    assert dataset_name(Dataset(DatasetKind.EXPORT, "daily.parquet", "/p/exports/"), NS) == (
        "file", "/p/exports/daily.parquet")
    # an HTTP API: no user info, no query string (tokens), no fragment
    assert dataset_name(Dataset(DatasetKind.HTTP, "https://user:pw@api.example.com:8443/v1/items?token=abc#x"),
                        NS) == ("https://api.example.com:8443", "/v1/items")


def test_the_lake_namespace_has_no_password():
    def project(catalog: str):
        return SimpleNamespace(config=SimpleNamespace(lake=SimpleNamespace(catalog=catalog)),
                               resolve=lambda p: "/srv/p/" + p)

    assert lake_namespace(project("postgresql://u:hunter2x@pg.local:5433/lake")) == "ducklake://pg.local:5433/lake"
    assert lake_namespace(project("postgres:host=pg.local dbname=lake password=hunter2x")) == \
        "ducklake://pg.local:5432/lake"
    assert lake_namespace(project(".airduck/catalog.sqlite")) == "ducklake:///srv/p/.airduck/catalog.sqlite"


def test_settings_lineage_block_then_openlineage_env_then_openlineage_yml(tmp_path: Path):
    off = resolve(None, "shop", tmp_path, {})
    assert not off.enabled
    s = resolve(LineageConfig(http={"url": "http://m:5000", "api_key": "k-123456789"}, console=True), "shop",
                tmp_path, {})
    assert s.enabled and s.namespace == "shop" and s.console and s.targets == ["http://m:5000/api/v1/lineage"]
    assert s.file == tmp_path / ".airduck/lineage/events.jsonl"
    assert not resolve(LineageConfig(), "shop", tmp_path, {"OPENLINEAGE_DISABLED": "true"}).enabled
    # a block without http: sends to OPENLINEAGE_URL; one with http: keeps its own
    assert resolve(LineageConfig(console=True), "shop", tmp_path, {"OPENLINEAGE_URL": "http://e:1"}).targets == [
        "http://e:1/api/v1/lineage"]
    assert resolve(LineageConfig(http={"url": "http://m:5000"}), "shop", tmp_path,
                   {"OPENLINEAGE_URL": "http://e:1"}).targets == ["http://m:5000/api/v1/lineage"]
    env = resolve(None, "shop", tmp_path, {"OPENLINEAGE_URL": "http://m:5000", "OPENLINEAGE_ENDPOINT": "x/y",
                                           "OPENLINEAGE_NAMESPACE": "team"})
    assert env.enabled and env.targets == ["http://m:5000/x/y"] and env.namespace == "team"
    (tmp_path / "openlineage.yml").write_text(
        "transport:\n  type: composite\n  transports:\n    - {type: console}\n"
        "    - {type: http, url: 'http://b:1', auth: {type: api_key, apiKey: secret-key-42aa}}\n")
    yml = resolve(None, "shop", tmp_path, {})
    assert yml.enabled and yml.console and yml.targets == ["http://b:1/api/v1/lineage"]
    assert yml.http[0].api_key.get_secret_value() == "secret-key-42aa"
    from airduck.config.secrets import redact

    assert "secret-key-42aa" not in redact("key secret-key-42aa")  # registered: masked in every output
    (tmp_path / "bad.yml").write_text("transport: {type: kafka}\n")
    with pytest.raises(ConfigError, match="kafka"):
        resolve(None, "shop", tmp_path, {"OPENLINEAGE_CONFIG": str(tmp_path / "bad.yml")})
    with pytest.raises(ConfigError, match="no such file"):
        resolve(None, "shop", tmp_path, {"OPENLINEAGE_CONFIG": str(tmp_path / "missing.yml")})


def test_unknown_lineage_keys_are_config_errors(local_projects):
    root = local_projects.make({**orders_config(), "lineage": {"htp": {"url": "x"}}})
    with pytest.raises(ConfigError, match="htp"):
        Lakehouse.open(root)


def test_graph_of_a_small_project_without_a_run(local_projects):
    config = orders_config()
    config["silver"]["orders"]["columns"]["amount_cents"] = {"type": "BIGINT", "expr": "CAST(amount AS DOUBLE) * 100"}
    config["silver"]["orders"]["columns"]["who"] = {"from": "customer"}
    root = local_projects.make(config)
    with Lakehouse.open(root) as lh:
        g = lh.lineage(columns=True).to_dict()
        only = lh.lineage("orders", downstream=False).to_dict()
    assert {n["id"]: n["kind"] for n in g["nodes"]} == {
        "ingest:orders": "step", "files:data/orders/*.csv": "source", "bronze.orders": "table",
        "bronze.orders__rejects": "table", "silver:orders": "step", "silver.orders": "table",
        "silver.orders__quarantine": "table"}
    assert next(n for n in g["nodes"] if n["id"] == "silver.orders__quarantine")["role"] == "quarantine"
    cols = {c["column"]: c for c in g["columns"]}
    assert [s["column"] for s in cols["amount_cents"]["sources"]] == ["amount"]
    assert cols["amount_cents"]["transformation"] == "expression"
    assert (cols["who"]["transformation"], cols["who"]["sources"][0]["column"]) == ("rename", "customer")
    assert cols["customer"]["transformation"] == "normalize" and cols["order_id"]["transformation"] == "cast"
    # `orders` (a bare name) is silver.orders; upstream only: no quarantine, which nothing reads
    assert {n["id"] for n in only["nodes"]} == {"files:data/orders/*.csv", "ingest:orders", "bronze.orders",
                                                "silver:orders", "silver.orders"}


def test_a_config_file_wins_over_openlineage_url_as_in_openlineages_client(tmp_path: Path):
    env = {"OPENLINEAGE_URL": "http://url:1"}
    (tmp_path / "ol.yml").write_text("transport: {type: http, url: 'http://file:2'}\n")
    assert resolve(None, "shop", tmp_path, {**env, "OPENLINEAGE_CONFIG": str(tmp_path / "ol.yml")}).targets == [
        "http://file:2/api/v1/lineage"]
    # a config file without a transport (facets only, say): OPENLINEAGE_URL still applies
    (tmp_path / "ol.yml").write_text("facets: {environment_variables: [X]}\n")
    assert resolve(None, "shop", tmp_path, {**env, "OPENLINEAGE_CONFIG": str(tmp_path / "ol.yml")}).targets == [
        "http://url:1/api/v1/lineage"]
    # ~/.openlineage/openlineage.yml, as OpenLineage's client reads it
    home = tmp_path / "home"
    (home / ".openlineage").mkdir(parents=True)
    (home / ".openlineage" / "openlineage.yml").write_text("transport: {type: http, url: 'http://home:3'}\n")
    project = tmp_path / "p"
    project.mkdir()
    s = resolve(None, "shop", project, {**env, "HOME": str(home)})
    assert s.enabled and s.targets == ["http://home:3/api/v1/lineage"]
    assert not resolve(None, "shop", project, {"HOME": str(home), "OPENLINEAGE_DISABLED": "true"}).enabled
