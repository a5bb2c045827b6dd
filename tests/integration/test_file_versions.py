"""A changed file is ingested again as a new version; silver never holds its unchanged records twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from airduck.lakehouse import Lakehouse

COLUMNS = {"event_id": {"type": "BIGINT", "required": True}, "kind": {"type": "VARCHAR"},
           "amount": {"type": "INTEGER"}, "at": {"type": "TIMESTAMP"}}


def config() -> dict:
    def table(mode: str) -> dict:
        rule = {"from": "events", "mode": mode, "columns": COLUMNS}
        if mode != "append":
            rule.update(key=["event_id"], order_by=["at"])
        return rule

    return {"sources": {"events": {"type": "files", "path": "data/*.ndjson"}},
            "silver": {"log": table("append"), "latest": table("merge"), "history": table("scd2")}}


def write(root: Path, lines: list[str]) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "events.ndjson").write_text("\n".join(lines) + "\n")


def event(i: int, amount: int, day: int | None = None) -> str:
    return f'{{"event_id": {i}, "kind": "click", "amount": {amount}, "at": "2026-11-{day or i:02d} 10:00:00"}}'


def counts(lh: Lakehouse) -> dict[str, int]:
    return {t: lh.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("bronze.events", "bronze.events__rejects", "silver.log", "silver.latest", "silver.history")}


@pytest.mark.parametrize("lake_combo", ["sqlite-local", "pg-local"])
def test_a_fixed_line_appends_only_the_new_record_and_keyed_modes_do_not_duplicate(projects):
    root = projects.make(config())
    write(root, [event(1, 10), event(2, 20), '{"event_id": 3, "kind": "cli', event(4, 40), event(4, 40)])
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        assert counts(lh) == {"bronze.events": 4, "bronze.events__rejects": 1, "silver.log": 4,
                              "silver.latest": 3, "silver.history": 3}
        # fix the broken line: the whole file is a new version in bronze, silver gets only the record that is new
        write(root, [event(1, 10), event(2, 20), event(3, 30), event(4, 40), event(4, 40)])
        result = lh.run()
        assert result.ok
        assert counts(lh) == {"bronze.events": 9, "bronze.events__rejects": 1, "silver.log": 5,
                              "silver.latest": 4, "silver.history": 4}
        assert {s.table: s.rows_in for s in result.steps}["silver.log"] == 1
        log = lh.con.execute("SELECT event_id, count(*) FROM silver.log GROUP BY 1 ORDER BY 1").fetchall()
        assert log == [(1, 1), (2, 1), (3, 1), (4, 2)]  # the duplicate line within the file is kept: it is data
        # a changed record is a new record of the log; merge updates it; scd2 opens a version. Two versions that
        # silver reads in one go (bronze ran alone in between) are compared with each other too
        write(root, [event(1, 10), event(2, 25, day=9), event(3, 30), event(4, 40), event(4, 40)])
        assert lh.run(["bronze"]).ok
        write(root, [event(1, 10), event(2, 25, day=9), event(3, 30), event(4, 40), event(4, 40), event(5, 50)])
        assert lh.run().ok
        assert counts(lh) == {"bronze.events": 20, "bronze.events__rejects": 1, "silver.log": 7,
                              "silver.latest": 5, "silver.history": 6}
        assert lh.con.execute("SELECT amount FROM silver.latest WHERE event_id = 2").fetchall() == [(25,)]
        before = counts(lh)
        # a rebuild from bronze gives the same tables (each version adds only what it added)
        assert lh.run(full_refresh=True).ok
        assert counts(lh) == before
        assert lh.con.execute("SELECT count(*) FROM silver.history WHERE is_current").fetchone()[0] == 5
