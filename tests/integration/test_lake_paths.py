"""Where the lake's data lives: a project folder with a relative data path works wherever it is (copied, moved,
cloned); a data path that does not match what the catalog holds is one clear error naming both paths."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from airduck.errors import ConfigError
from airduck.gold.profile import profile_dict
from airduck.lakehouse import Lakehouse
from airduck.project import load_project
from tests.integration.test_pipeline_runs import count, orders_config, write_orders


def _files(root: Path) -> dict[str, str]:
    """Every file under the project's .airduck/data and the catalog, with a hash of its bytes."""
    state = root / ".airduck"
    paths = [p for p in (state / "data").rglob("*") if p.is_file()] + [state / "catalog.sqlite"]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _set_lake(root: Path, **lake: str) -> None:
    config = yaml.safe_load((root / "airduck.yml").read_text())
    config["lake"] = {**config.get("lake", {}), **lake}
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_copied_project_uses_its_own_lake_and_never_the_original(local_projects, tmp_path):
    original = local_projects.make(orders_config(), name="proj")
    write_orders(original, "day1.csv", 0, 500)
    with Lakehouse.open(original) as lh:
        assert lh.run().ok
    copy = tmp_path / "proj2"
    shutil.copytree(original, copy)
    before = _files(original)
    write_orders(copy, "day2.csv", 400, 200)  # 100 updates, 100 new
    with Lakehouse.open(copy) as lh:
        assert lh.run().ok
        assert (count(lh, "bronze.orders"), count(lh, "silver.orders")) == (700, 600)
    assert _files(original) == before  # the copy wrote nothing into the original
    assert len(_files(copy)) > len(before)  # its new data files are in its own folder
    # dbt attaches the copy's own data folder too
    options = profile_dict(load_project(copy), "gold_stage")["airduck"]["outputs"]["airduck"]["attach"][0]["options"]
    assert options["data_path"].startswith(str(copy)) and options["override_data_path"] is True
    shutil.rmtree(original)  # the copy does not need the original's files
    with Lakehouse.open(copy) as lh:
        assert lh.con.execute("SELECT count(*), sum(order_id) FROM bronze.orders").fetchone() == (
            700, sum(range(500)) + sum(range(400, 600)))
        assert lh.con.execute("SELECT count(*), sum(amount) > 0 FROM silver.orders").fetchone() == (600, True)
        assert lh.sql("SELECT count(*) FROM silver.orders")[1] == [(600,)]  # the locked session reads it too
        assert lh.run().ok


def test_a_data_path_that_does_not_match_the_catalog_names_both_paths(local_projects, tmp_path):
    root = local_projects.make(name="lake")
    with Lakehouse.open(root) as lh:
        assert lh.con is not None and lh.schemas()  # the read-write connection creates the lake (reads do not)
    stored = str(root / ".airduck" / "data")
    # an absolute data path elsewhere
    elsewhere = tmp_path / "elsewhere" / "data"
    _set_lake(root, data_path=f"{elsewhere}/")
    with pytest.raises(ConfigError) as info, Lakehouse.open(root) as lh:
        lh.schemas()
    assert stored in info.value.message and str(elsewhere) in info.value.message
    assert stored in (info.value.hint or "")
    # a relative data path that was changed (the catalog still points at the old folder)
    _set_lake(root, data_path="lake-data/")
    with pytest.raises(ConfigError) as info, Lakehouse.open(root) as lh:
        lh.schemas()
    assert stored in info.value.message and str(root / "lake-data") in info.value.message
    assert "lake.data_path" in (info.value.hint or "")


def test_two_checkouts_sharing_a_postgres_catalog_with_local_data_are_told_why(tmp_path, pg_database):
    catalog = pg_database()
    first, second = tmp_path / "checkout1", tmp_path / "checkout2"
    for root in (first, second):
        root.mkdir()
        (root / "airduck.yml").write_text(yaml.safe_dump({"name": "test", "lake": {"catalog": catalog}}))
    with Lakehouse.open(first) as lh:
        assert lh.con is not None and lh.schemas()  # the read-write connection creates the lake (reads do not)
    with pytest.raises(ConfigError) as info, Lakehouse.open(second) as lh:
        lh.schemas()
    message = info.value.message
    assert str(first / ".airduck" / "data") in message and str(second / ".airduck" / "data") in message
    assert "share" in (info.value.hint or "") and "s3://" in info.value.hint
    with Lakehouse.open(first) as lh:  # the checkout that made the lake keeps working
        assert lh.schemas()
