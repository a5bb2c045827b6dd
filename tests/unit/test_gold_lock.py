"""The gold step is serialised per project: a second holder waits (SQLite: flock; PostgreSQL: advisory lock)."""

from __future__ import annotations

import threading

import pytest
import yaml

from airduck.errors import ConcurrentRunError
from airduck.events import Reporter
from airduck.pipeline.locks import gold_lock
from airduck.project import load_project


class Recorder(Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str, level: str = "info") -> None:
        self.messages.append(text)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_second_gold_step_waits_then_times_out(tmp_path, pg_database, kind):
    lake = {} if kind == "sqlite" else {"catalog": pg_database()}
    (tmp_path / "airduck.yml").write_text(yaml.safe_dump({"name": "x", "lake": lake}))
    (tmp_path / ".airduck").mkdir()
    project = load_project(tmp_path, environ={})
    inside = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with gold_lock(project, Reporter(), 30):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(30)
    rec = Recorder()
    with pytest.raises(ConcurrentRunError), gold_lock(project, rec, 1.0):
        pass
    assert rec.messages == ["waiting for another run's gold step to finish"]
    release.set()
    t.join(30)
    with gold_lock(project, Reporter(), 5):  # free again
        pass


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_table_locks_serialise_one_table_and_never_block_another(tmp_path, pg_database, kind):
    from airduck.pipeline.locks import project_lock

    lake = {} if kind == "sqlite" else {"catalog": pg_database()}
    (tmp_path / "airduck.yml").write_text(yaml.safe_dump({"name": "x", "lake": lake}))
    (tmp_path / ".airduck").mkdir()
    project = load_project(tmp_path, environ={})
    inside = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with project_lock(project, "bronze.orders"):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(30)
    with project_lock(project, "bronze.customers", timeout=1.0):  # another table: no wait
        pass
    waited: list[bool] = []
    with pytest.raises(ConcurrentRunError, match=r"bronze\.orders"), \
            project_lock(project, "bronze.orders", timeout=0.5, notify=lambda: waited.append(True)):
        pass
    assert waited == [True]
    release.set()
    t.join(30)
    with project_lock(project, "bronze.orders", timeout=5):
        pass


def test_docs_wait_for_the_gold_lock_of_a_run(tmp_path):
    """`airduck docs` runs dbt in gold's staging schema like a run's gold step: it waits for that step's lock
    (here held by another holder until the docs give up), and starts no dbt meanwhile."""
    from airduck.lakehouse import Lakehouse

    (tmp_path / "gold").mkdir()
    (tmp_path / "gold" / "dbt_project.yml").write_text("name: g\nversion: '1.0'\nprofile: airduck\n")
    (tmp_path / "airduck.yml").write_text(yaml.safe_dump({"name": "x", "gold": {"dbt_project": "gold/",
                                                                                 "timeout": 1.0}}))
    project = load_project(tmp_path, environ={})
    inside, release = threading.Event(), threading.Event()

    def holder() -> None:
        with gold_lock(project, Reporter(), 30):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(30)
        rec = Recorder()
        with pytest.raises(ConcurrentRunError), Lakehouse(project, rec) as lh:
            lh.docs(tmp_path / "docs")
        assert rec.messages == ["waiting for another run's gold step to finish"]
        assert not (tmp_path / "docs").exists()
    finally:
        release.set()
        t.join(30)
