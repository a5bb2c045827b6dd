"""What the CLI's init, demo and maintain call: the facade, usable without the CLI."""

from __future__ import annotations

import pytest

import airduck
from airduck.errors import ConfigError


def test_maintenance_steps_are_checked_before_the_lake_is_opened(tmp_path) -> None:
    from airduck.lakehouse import MAINTENANCE_STEPS, Lakehouse, UnknownStep

    airduck.init(tmp_path)
    with Lakehouse.open(tmp_path) as lh, pytest.raises(UnknownStep, match="'bogus' is not a step; choose from flush"):
        lh.maintain(steps=("merge", "bogus"))
    assert MAINTENANCE_STEPS == ("flush", "merge", "rewrite", "expire", "cleanup")
    assert not (tmp_path / ".airduck").exists()  # nothing was opened


def test_init_and_the_demo_need_no_project(tmp_path) -> None:
    path = airduck.init(tmp_path / "p", name="shop")
    assert path == tmp_path / "p" / "airduck.yml" and "name: shop" in path.read_text()
    with pytest.raises(ConfigError, match="already exists"):
        airduck.init(tmp_path / "p")
    with pytest.raises(ConfigError, match="is not a demo project"):
        airduck.generate_demo_data(tmp_path / "p", 1)

    demo = tmp_path / "demo"
    assert airduck.ensure_demo_project(demo, days=1) is True
    assert airduck.ensure_demo_project(demo, days=1) is False  # kept as it is
    added = airduck.generate_demo_data(demo, 2)
    assert len(added.days) == 2 and all(f.is_file() for f in added.files)
    assert airduck.load_project(demo).config.silver.keys() >= {"vacancies", "companies"}
