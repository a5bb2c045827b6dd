"""Gold on the team stack: PostgreSQL catalog, data on S3 (SeaweedFS), through dbt."""

from __future__ import annotations

import yaml

from airduck.gold import STAGE, run_gold
from airduck.lake.connection import open_lake
from airduck.project import load_project
from tests.integration.test_gold_build import (
    GOLD_TABLES,
    expected,
    project_config,
    rows,
    seed_lake,
    write_dbt_project,
)


def test_gold_on_postgres_catalog_and_s3_data(pg_s3_projects, s3_server):
    root = pg_s3_projects.make(project_config())
    write_dbt_project(root)
    project = load_project(root)
    seed_lake(project)

    result = run_gold(project, run_id="s3run", artifacts_dir=project.state_dir / "runs" / "s3run" / "dbt")

    assert sorted(result.published) == [f"gold.{t}" for t in GOLD_TABLES]
    for table in GOLD_TABLES:
        assert rows(project, f"gold.{table}") == expected(project, table)
    # the marts' files are on S3, under the project's data path
    con = open_lake(project)
    try:
        data_path = con.execute("SELECT value FROM lake.options() WHERE option_name = 'data_path'").fetchone()[0]
        files = con.execute("SELECT data_file FROM ducklake_list_files('lake', 'customer_revenue', schema => 'gold')"
                            ).fetchall()
    finally:
        con.close()
    assert data_path.startswith(f"s3://{s3_server.bucket}/")
    assert files and all(f[0].startswith("s3://") for f in files)

    # the generated profile holds no secret: the DSN and the S3 secret key are env_var() references
    profile_file = project.state_dir / "dbt" / "profile" / "profiles.yml"
    text = profile_file.read_text()
    assert s3_server.secret_access_key not in text
    assert project.config.lake.catalog not in text
    out = yaml.safe_load(text)["airduck"]["outputs"]["airduck"]
    assert out["attach"][0]["path"] == "{{ env_var('DBT_ENV_SECRET_AIRDUCK_CATALOG') }}"
    secret = out["secrets"][0]
    assert secret["type"] == "s3" and secret["url_style"] == "path" and secret["use_ssl"] == "false"
    assert secret["endpoint"] == s3_server.endpoint
    assert secret["secret"] == "{{ env_var('DBT_ENV_SECRET_AIRDUCK_S3_SECRET') }}"
    # ... nor does dbt's log
    log = (project.state_dir / "runs" / "s3run" / "dbt" / "logs" / "dbt.log").read_text()
    assert s3_server.secret_access_key not in log
    assert STAGE in log
