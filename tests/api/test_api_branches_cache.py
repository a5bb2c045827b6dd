"""The API's open facades of `?branch=` (airduck.api.facades): a facade a read is using is never closed under it
(eviction retires it; the last lease closes it), a deleted branch is a 404 and its facade is closed, a branch
created again is read afresh. On sqlite-local and pg-local."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from fastapi import Request

from airduck.api.routers.common import lakehouse
from airduck.lakehouse import Lakehouse
from tests.api.conftest import Served, _served
from tests.integration.test_pipeline_runs import write_orders

EXTRA = 7  # rows branch `plus` has that main has not
COUNT = "SELECT count(*) FROM silver.orders"


@pytest.fixture(scope="module", params=["sqlite-local", "pg-local"])
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A served lake with branch `plus`: main and EXTRA more orders (run on the branch)."""
    served = _served(request, tmp_path_factory, request.param)
    s = next(served)
    try:
        with Lakehouse.open(s.root) as lh:
            lh.create_branch("plus")
        write_orders(s.root, "day2.csv", 300, EXTRA)
        with Lakehouse.open(s.root, branch="plus") as lh:
            lh.run()
        yield s
    finally:
        served.close()


def _rows(s: Served, branch: str) -> int:
    r = s.get(f"/api/v1/tables/silver.orders?branch={branch}")
    assert r.status_code == 200, r.text
    return r.json()["row_count"]


def _recreate(s: Served, name: str, source: str | None = None) -> None:
    with Lakehouse.open(s.root) as lh:
        if name in [b.name for b in lh.branches(heads=False)]:
            lh.delete_branch(name)
        lh.create_branch(name, source)


class _Other(threading.Thread):
    """`fn` on a thread of its own, as another request would run it; `finish()` waits for it and raises its error."""

    def __init__(self, fn) -> None:
        super().__init__(daemon=True)
        self.fn, self.error = fn, None
        self.start()

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as exc:  # raised by finish(), in the test's thread
            self.error = exc

    def finish(self) -> None:
        self.join(60)
        assert not self.is_alive(), "the other thread did not finish"
        if self.error is not None:
            raise self.error


def test_read_in_flight_survives_the_branch_recreated_and_its_facade_closes_after(lake):
    """(a) A read of a branch in the middle of its transaction while another thread deletes the branch, creates it
    again from another point and reads it (which replaces the cached facade): the read ends on the old fork, the
    new request sees the new fork, and the old facade is closed once the read released it. (On PostgreSQL the
    delete, a DROP SCHEMA, waits for the read's transaction to end; on SQLite it goes on beside it.)"""
    s, facades = lake, lake.app.state.branches
    _recreate(s, "busy")
    main_rows = _rows(s, "busy")
    old = facades.cached()["busy"]

    def evict() -> None:
        _recreate(s, "busy", "plus")
        assert _rows(s, "busy") == main_rows + EXTRA

    with facades.lease("busy") as lh:
        assert lh is old
        with lh.read_session().cursor() as cur:
            assert cur.execute(COUNT).fetchone()[0] == main_rows
            other = _Other(evict)
            if s.combo == "sqlite-local":
                other.finish()
                assert facades.cached()["busy"] is not old  # replaced while the read is open
            assert cur.execute(COUNT).fetchone()[0] == main_rows  # the read goes on, on the old fork
            assert old.is_open  # retired, not closed under the read
    other.finish()
    assert facades.cached()["busy"] is not old and not old.is_open and facades.in_use() == 0
    assert _rows(s, "busy") == main_rows + EXTRA


def test_request_in_flight_keeps_its_facade_until_its_response_is_sent(lake, monkeypatch):
    """(a) A request that reads a branch, waits, and reads it again (as a page does: describe, then a query),
    while another request evicts its facade (the cache is full): both its reads answer on that facade, which is
    closed once the response is sent, not before and not never."""
    s, facades = lake, lake.app.state.branches
    monkeypatch.setattr(s.app.state.lakehouse.project.config.api, "open_branches", 1)
    _recreate(s, "held")
    _recreate(s, "pusher")
    started, go = threading.Event(), threading.Event()
    used: list[Lakehouse] = []

    @s.app.get("/test/held-read")  # a route like the others (this module's app only): two reads of ?branch=
    def held_read(request: Request) -> dict:
        lh = lakehouse(request, request.query_params["branch"])
        used.append(lh)
        tables = len(lh.describe_tables())
        started.set()
        go.wait(60)
        return {"tables": tables, "rows": lh.sql(COUNT).rows[0][0]}

    main_rows = _rows(s, "held")
    old = facades.cached()["held"]
    request = _Other(lambda: used.append(s.get("/test/held-read?branch=held")))
    try:
        assert started.wait(60)
        assert used[0] is old and facades.in_use() == 1
        assert _rows(s, "pusher") == main_rows  # evicts `held`
        assert list(facades.cached()) == ["pusher"] and old.is_open and facades.in_use() == 1
    finally:
        go.set()  # the request goes on (also when an assertion failed: never left waiting)
        request.join(60)
    request.finish()
    r = used[1]
    assert r.status_code == 200 and r.json()["rows"] == main_rows and r.json()["tables"] > 0
    assert not old.is_open and facades.in_use() == 0


def test_full_cache_evicts_the_least_recent_but_closes_it_after_its_last_read(lake, monkeypatch):
    """(a) More branches read than api.open_branches: the least recently read facade leaves the cache; one that
    a read holds stays open for it (a query on it works) and is closed when it is released."""
    s, facades = lake, lake.app.state.branches
    monkeypatch.setattr(s.app.state.lakehouse.project.config.api, "open_branches", 1)
    _recreate(s, "first")
    _recreate(s, "second")
    main_rows = _rows(s, "first")
    with facades.lease("first") as lh:
        with lh.read_session().cursor() as cur:
            assert cur.execute(COUNT).fetchone()[0] == main_rows
            _Other(lambda: _rows(s, "second")).finish()
            assert list(facades.cached()) == ["second"]  # evicted while the read is open
            assert cur.execute(COUNT).fetchone()[0] == main_rows
            assert lh.is_open
        assert lh.sql(COUNT).rows == [(main_rows,)]
    assert not lh.is_open and facades.in_use() == 0
    assert list(facades.cached()) == ["second"]
    r = s.post("/api/v1/sql?branch=first", json={"sql": COUNT})  # opened afresh
    assert r.status_code == 200 and r.json()["rows"] == [[main_rows]]
    assert list(facades.cached()) == ["first"] and facades.in_use() == 0


def test_deleted_branch_is_404_and_its_facade_is_closed(lake):
    """(b) A branch deleted after the API read it: every read of it is the 404 of the API's error shape (the
    browser: its 404 page), and its cached facade is closed, not kept open on a catalog that is gone."""
    s, facades = lake, lake.app.state.branches
    _recreate(s, "gone")
    _rows(s, "gone")
    old = facades.cached()["gone"]
    assert old.is_open
    with Lakehouse.open(s.root) as lh:
        lh.delete_branch("gone")
    for r in (s.get("/api/v1/tables?branch=gone"), s.get("/api/v1/tables/silver.orders/rows?branch=gone"),
              s.post("/api/v1/sql?branch=gone", json={"sql": COUNT}), s.get("/api/v1/snapshots?branch=gone")):
        assert r.status_code == 404, r.text
        assert r.json() == {"error": {"type": "NotFound", "message": "there is no branch 'gone'",
                                      "hint": "see `airduck branch list`"}}
    page = s.get("/catalog?branch=gone")
    assert page.status_code == 404 and "No such branch" in page.text and "there is no branch" in page.text
    assert "gone" not in facades.cached() and not old.is_open and facades.in_use() == 0


def test_branch_created_again_from_another_point_shows_the_new_fork(lake):
    """(c) A branch deleted (a 404 meanwhile, which closes its facade) and created again under the same name from another point: the API
    and the browser read the new fork, through a new facade; the old one is closed."""
    s, facades = lake, lake.app.state.branches
    _recreate(s, "again", "plus")
    assert _rows(s, "again") == _rows(s, "main") + EXTRA
    old = facades.cached()["again"]
    with Lakehouse.open(s.root) as lh:
        lh.delete_branch("again")
    assert s.get("/api/v1/tables?branch=again").status_code == 404
    assert "again" not in facades.cached() and not old.is_open
    with Lakehouse.open(s.root) as lh:
        lh.create_branch("again")  # from main this time
    main_rows = _rows(s, "main")
    assert _rows(s, "again") == main_rows
    r = s.post("/api/v1/sql?branch=again", json={"sql": COUNT})
    assert r.status_code == 200 and r.json()["rows"] == [[main_rows]]
    row = re.search(r'href="/tables/silver.orders\?branch=again">silver.orders</a></td><td class="num">([\d,]+)<',
                    s.get("/catalog?branch=again").text)
    assert row and int(row.group(1).replace(",", "")) == main_rows
    assert facades.cached()["again"] is not old and not old.is_open and facades.in_use() == 0
