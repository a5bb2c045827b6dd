"""Exporting gold marts as Parquet (+ manifest) and Delta Lake, to a local folder and to S3."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import boto3
import duckdb
from deltalake import DeltaTable

from airduck.lake.commit import write
from airduck.lake.connection import open_lake
from airduck.project import load_project
from airduck.serve import export_tables
from airduck.serve.export import delta_storage_options
from tests.support.lake import lake_rows


def seed(project, n: int) -> int:
    """gold.sales with n rows; returns the lake snapshot after the write."""
    con = open_lake(project)
    try:
        with write(con, f"seed gold ({n})"):
            con.execute(f"""CREATE OR REPLACE TABLE gold.sales AS
                SELECT i AS sale_id, 'item ' || (i % 17) AS item, CAST(i * 1.5 AS DECIMAL(10, 2)) AS amount,
                       DATE '2024-01-01' + CAST(i % 90 AS INTEGER) AS day,
                       TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL (i) SECOND AS at,
                       i % 5 = 0 AS flagged
                FROM range({int(n)}) t(i)""")
            con.execute("CREATE OR REPLACE TABLE gold.items AS SELECT DISTINCT item FROM gold.sales")
        return con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0]
    finally:
        con.close()


def export(project, run_id: str):
    con = open_lake(project)
    try:
        return export_tables(con, project, run_id=run_id)
    finally:
        con.close()


def test_export_parquet_and_delta_to_a_local_folder(local_projects):
    root = local_projects.make({"serve": {"export": {
        "path": "exports/", "format": ["parquet", "delta"],
        "tables": ["gold.sales", {"table": "gold.items", "name": "item_list"}],
    }}})
    project = load_project(root)
    snap1 = seed(project, 1000)

    steps = export(project, "run-1")

    assert [(s.layer, s.table, s.status, s.rows_out) for s in steps] == [
        ("serve", "gold.sales", "ok", 1000), ("serve", "gold.items", "ok", 17)]
    out = root / "exports"
    manifest = json.loads((out / "sales" / "run-1" / "manifest.json").read_text())
    assert manifest["table"] == "gold.sales" and manifest["name"] == "sales"
    assert manifest["rows"] == 1000 and manifest["snapshot_id"] == snap1 and manifest["run_id"] == "run-1"
    assert datetime.fromisoformat(manifest["written_at"]).tzinfo is not None
    assert manifest["files"] and all((out / "sales" / "run-1" / f).is_file() for f in manifest["files"])
    assert [c["name"] for c in manifest["columns"]] == ["sale_id", "item", "amount", "day", "at", "flagged"]
    latest = json.loads((out / "sales" / "_latest.json").read_text())
    assert latest["manifest"] == "run-1/manifest.json" and latest["snapshot_id"] == snap1
    # the Parquet files hold exactly the gold rows, with their types
    files = [str(out / "sales" / "run-1" / f) for f in manifest["files"]]
    con = duckdb.connect()
    parquet_rows = sorted(con.execute("SELECT * FROM read_parquet(?)", [files]).fetchall(), key=repr)
    assert parquet_rows == lake_rows(project, "gold.sales")
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))",
                             [files]).fetchall())
    assert types["amount"] == "DECIMAL(10,2)" and types["day"] == "DATE"
    assert (out / "item_list" / "run-1" / "manifest.json").is_file()  # `name` renames the export
    # the Delta table reads back with deltalake
    delta = DeltaTable(str(out / "sales" / "_delta"))
    assert delta.version() == manifest["delta"]["version"] == 0
    table = delta.to_pyarrow_table()
    assert table.num_rows == 1000
    assert sorted(table.column("sale_id").to_pylist()) == list(range(1000))

    # a second export after gold changed: a new folder, the pointer moves, the old run stays readable
    snap2 = seed(project, 400)
    export(project, "run-2")
    latest = json.loads((out / "sales" / "_latest.json").read_text())
    assert latest["manifest"] == "run-2/manifest.json" and latest["snapshot_id"] == snap2 > snap1
    manifest2 = json.loads((out / "sales" / "run-2" / "manifest.json").read_text())
    assert manifest2["rows"] == 400
    old_files = [str(out / "sales" / "run-1" / f) for f in manifest["files"]]
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [old_files]).fetchone()[0] == 1000
    delta = DeltaTable(str(out / "sales" / "_delta"))
    assert delta.version() == 1 and delta.to_pyarrow_table().num_rows == 400  # overwritten
    assert DeltaTable(str(out / "sales" / "_delta"), version=0).to_pyarrow_table().num_rows == 1000


def test_export_to_s3_from_a_local_lake(local_projects, s3_server):
    prefix = f"s3://{s3_server.bucket}/exports-{local_projects.tmp_path.name[-12:]}/"
    root = local_projects.make({
        "lake": {"s3": {"endpoint": s3_server.endpoint_url, "access_key_id": s3_server.access_key_id,
                        "secret_access_key": s3_server.secret_access_key, "region": s3_server.region}},
        "serve": {"export": {"path": prefix, "format": ["parquet", "delta"], "tables": ["gold.sales"]}},
    })
    project = load_project(root)
    seed(project, 250)

    steps = export(project, "run-s3")

    assert steps[0].rows_out == 250 and steps[0].details["location"] == f"{prefix}sales/run-s3/"
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id=s3_server.access_key_id,
                      aws_secret_access_key=s3_server.secret_access_key, region_name=s3_server.region)
    bucket, key_prefix = prefix[len("s3://"):].split("/", 1)
    latest = json.loads(s3.get_object(Bucket=bucket, Key=f"{key_prefix}sales/_latest.json")["Body"].read())
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{key_prefix}sales/{latest['manifest']}")["Body"].read())
    assert manifest["rows"] == 250
    # read the Parquet files back from S3 through DuckDB (the lake connection has the S3 secret)
    con = open_lake(project)
    try:
        from airduck.lake.connection import create_s3_secret

        create_s3_secret(con, project)
        files = [f"{manifest['location']}{f}" for f in manifest["files"]]
        got = sorted(con.execute("SELECT * FROM read_parquet(?)", [files]).fetchall(), key=repr)
    finally:
        con.close()
    assert got == lake_rows(project, "gold.sales")
    delta = DeltaTable(manifest["delta"]["path"], storage_options=delta_storage_options(project))
    assert delta.to_pyarrow_table().num_rows == 250
    assert not Path(root, prefix).exists()  # nothing was written locally
