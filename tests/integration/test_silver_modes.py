"""merge and scd2 on a real DuckLake, on every lake combination (SQLite+local, PostgreSQL+local, PostgreSQL+S3)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.unit.test_silver_harness import lab_factory_for

V = "VARCHAR"
COLS = {"id": V, "amount": V, "city": V, "updated_at": V, "deleted": V}


@pytest.fixture
def lab_factory(projects):
    yield from lab_factory_for(projects)


def row(id_, amount, city, at, deleted=None):
    return {"id": id_, "amount": amount, "city": city, "updated_at": at, "deleted": deleted}


def test_merge_upserts_by_key_and_deletes_flagged_rows(lab_factory):
    lab = lab_factory({"orders": {
        "from": "orders", "key": ["id"], "order_by": "updated_at", "mode": "merge", "deleted_flag": "deleted",
        "columns": {"id": {"type": "BIGINT"}, "amount": {"type": "DECIMAL(12,2)"},
                    "city": {"normalize": ["trim", "lower"]}, "updated_at": {"type": "TIMESTAMP"}}}})
    lab.bronze("orders", COLS, [row("1", "10", "Paris", "2024-01-01 10:00"), row("2", "20", "Rome", "2024-01-01 10:00"),
                                row("3", "30", "Oslo", "2024-01-01 10:00")])
    first = lab.run()["orders"]
    assert (first.details["inserted"], first.rows_out) == (3, 3)
    lab.bronze("orders", COLS, [
        row("1", "11", "Paris", "2024-01-02 10:00"),        # a change
        row("2", "20", " ROME ", "2024-01-01 10:00"),       # the same row again (after normalizing)
        row("3", None, None, None, "true"),                  # a delete: only the key is needed
        row("4", "40", "Lima", "2024-01-02 10:00"),         # new
        row("5", None, None, None, "true"),                  # a delete of a key that was never there
        row("4", "39", "Lima", "2024-01-01 09:00"),         # older version of 4 in the same batch: loses
    ])
    before = lab.snapshot()
    second = lab.run()["orders"]
    d = second.details
    assert (d["inserted"], d["updated"], d["deleted"], d["unchanged"], d["superseded"]) == (1, 1, 1, 1, 1)
    assert (second.rows_in, second.rows_out) == (6, 2)
    assert lab.rows("SELECT id, amount, city, updated_at, _run_id FROM lake.silver.orders ORDER BY id") == [
        (1, Decimal("11.00"), "paris", dt.datetime(2024, 1, 2, 10), "run-2"),
        (2, Decimal("20.00"), "rome", dt.datetime(2024, 1, 1, 10), "run-1"),  # unchanged rows are not rewritten
        (4, Decimal("40.00"), "lima", dt.datetime(2024, 1, 2, 10), "run-2"),
    ]
    assert lab.snapshot() == before + 1  # one run, one snapshot
    assert lab.one("SELECT count(*) - count(DISTINCT id) FROM lake.silver.orders") == 0
    # the same input again changes nothing
    lab.bronze("orders", COLS, [row("1", "11", "Paris", "2024-01-02 10:00")])
    third = lab.run()["orders"]
    assert (third.details["unchanged"], third.rows_out) == (1, 0)


def test_scd2_keeps_history_over_change_redelivery_and_delete(lab_factory):
    lab = lab_factory({"customers": {
        "from": "orders", "key": ["id"], "order_by": "updated_at", "mode": "scd2", "deleted_flag": "deleted",
        "columns": {"id": {"type": "BIGINT"}, "city": {"normalize": ["trim"]},
                    "updated_at": {"type": "TIMESTAMPTZ", "formats": ["%Y-%m-%d %H:%M%z"]}}}})
    t1, t2, t3 = "2024-01-01 10:00+00", "2024-02-01 10:00+00", "2024-03-01 10:00+00"
    lab.bronze("orders", COLS, [row("1", None, "Paris", t1), row("2", None, "Rome", t1)])
    first = lab.run()["customers"]
    assert (first.details["inserted"], first.details["closed_versions"]) == (2, 0)

    # batch 2: 1 moves, 2 is delivered again unchanged (a later updated_at alone is not a change)
    lab.bronze("orders", COLS, [row("1", None, "Berlin", t2), row("2", None, " Rome", t2)])
    second = lab.run()["customers"]
    assert (second.details["inserted"], second.details["closed_versions"], second.details["unchanged"]) == (1, 1, 1)

    # batch 3: 1 is deleted, 2 unchanged again
    lab.bronze("orders", COLS, [row("1", None, None, t3, "true"), row("2", None, "Rome", t3)])
    third = lab.run()["customers"]
    assert (third.details["deleted"], third.details["closed_versions"], third.details["inserted"]) == (1, 1, 0)

    utc = dt.UTC
    at = lambda s: dt.datetime.fromisoformat(s.replace(" ", "T")).astimezone(utc)  # noqa: E731
    rows = lab.rows("SELECT id, city, valid_from, valid_to, is_current FROM lake.silver.customers "
                    "ORDER BY id, valid_from")
    got = [(i, c, vf.astimezone(utc), vt.astimezone(utc) if vt else None, cur) for i, c, vf, vt, cur in rows]
    assert got == [
        (1, "Paris", at(t1), at(t2), False),
        (1, "Berlin", at(t2), at(t3), False),  # closed by the delete
        (2, "Rome", at(t1), None, True),       # re-deliveries did nothing
    ]
    assert lab.one("SELECT count(*) FROM lake.silver.customers WHERE is_current GROUP BY id HAVING count(*) > 1") is None


def test_scd2_keeps_every_version_that_arrives_in_one_batch(lab_factory):
    """A catch-up load (many days in one run) still yields one version per real change, in order."""
    lab = lab_factory({"customers": {
        "from": "orders", "key": ["id"], "order_by": "updated_at", "mode": "scd2",
        "columns": {"id": {"type": "BIGINT"}, "city": {"normalize": ["trim"]},
                    "updated_at": {"type": "TIMESTAMP"}}}})
    lab.bronze("orders", COLS, [
        row("1", None, "Paris", "2024-01-01 10:00"), row("1", None, "Paris", "2024-01-01 10:00"),  # duplicate
        row("1", None, "Berlin", "2024-02-01 10:00"), row("1", None, "Oslo", "2024-03-01 10:00"),
        row("2", None, "Rome", "2024-01-01 10:00"), row("2", None, "Rome", "2024-02-01 10:00"),  # no real change
    ])
    lab.run()
    assert lab.rows("SELECT id, city, valid_from, valid_to, is_current FROM lake.silver.customers "
                    "ORDER BY id, valid_from") == [
        (1, "Paris", dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC), dt.datetime(2024, 2, 1, 10, tzinfo=dt.UTC), False),
        (1, "Berlin", dt.datetime(2024, 2, 1, 10, tzinfo=dt.UTC), dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC), False),
        (1, "Oslo", dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC), None, True),
        (2, "Rome", dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC), None, True),
    ]
