"""A merge replays exactly the branch's row changes (docs/branches.md, "Merge"), on the three lake combinations:
updates (some rows twice), deletes, inserts, rows inserted then updated or deleted again, a row deleted and
inserted again with the same values, in data files and in rows DuckLake keeps inlined in the catalog; the target
then equals the branch, row for row, and the merge wrote only the changed rows."""

from __future__ import annotations

from airduck.lakehouse import Lakehouse

TABLES = ("silver.m", "silver.f")


def rows(lh: Lakehouse, table: str, at: int | None = None) -> list[tuple]:
    clause = f" AT (VERSION => {int(at)})" if at is not None else ""
    return sorted(lh.con.execute(f"SELECT * FROM {table}{clause}").fetchall())


def checksum(lh: Lakehouse, table: str) -> tuple[int, int]:
    return lh.con.execute(f"SELECT count(*), sum(hash(x)) FROM {table} x").fetchone()


def inserted_by(lh: Lakehouse, table: str, snapshot: int) -> int:
    schema, name = table.split(".")
    return lh.con.execute(f"SELECT count(*) FROM ducklake_table_insertions('lake', '{schema}', '{name}', "
                          f"{snapshot}, {snapshot})").fetchone()[0]


def change(lh: Lakehouse, table: str) -> None:
    """The branch's changes: files and inlined rows, updated once or twice, deleted, inserted, and so on."""
    lh.con.execute(f"UPDATE {table} SET v = v + 1 WHERE id % 7 = 0")  # in every file and the inlined rows
    lh.con.execute(f"UPDATE {table} SET v = v * 2 WHERE id % 14 = 0")  # half of them twice
    lh.con.execute(f"DELETE FROM {table} WHERE id % 11 = 0")  # some of them updated before
    lh.con.execute(f"INSERT INTO {table} SELECT 10000 + range, 0.5, 'inlined' FROM range(3)")  # inlined
    lh.con.execute(f"INSERT INTO {table} SELECT 20000 + range, 0.25, 'file' FROM range(100)")  # a new file
    lh.con.execute(f"UPDATE {table} SET v = -1 WHERE id IN (10001, 20001)")  # new rows updated
    lh.con.execute(f"DELETE FROM {table} WHERE id IN (10002, 20002)")  # new rows deleted again
    lh.con.execute(f"DELETE FROM {table} WHERE id IN (5, 901)")  # a file row and an inlined one ...
    lh.con.execute(f"INSERT INTO {table} VALUES (5, 5.0, 'n5'), (901, 901.0, 'n901')")  # ... back, same values


def test_merge_replays_exactly_the_branch_changes(projects):
    root = projects.make({"lake": {"data_inlining_row_limit": 10}})
    with Lakehouse.open(root) as lh:
        for table, name in (("silver.m", "note"), ("silver.f", "filename")):  # `filename` hides DuckLake's
            lh.con.execute(f"CREATE TABLE {table} (id BIGINT, v DOUBLE, {name} VARCHAR)")
            for start in (0, 300, 600):  # three data files
                lh.con.execute(f"INSERT INTO {table} SELECT range, range, 'n' || range FROM range({start}, {start + 300})")
            lh.con.execute(f"INSERT INTO {table} SELECT range, range, 'n' || range FROM range(900, 905)")  # inlined
        fork = lh.current_snapshot()
        before = {t: rows(lh, t) for t in TABLES}
        lh.create_branch("dev")
    with Lakehouse.open(root, branch="dev") as dev:
        for t in TABLES:
            change(dev, t)
        branch = {t: rows(dev, t) for t in TABLES}
        sums = {t: checksum(dev, t) for t in TABLES}
    ids = range(905)
    updated = {i for i in ids if i % 7 == 0 and i % 11 != 0}
    deleted = {i for i in ids if i % 11 == 0}
    expected = {"updated": len(updated), "deleted": len(deleted) + 2, "inserted": 2 + 99 + 2}
    for t in TABLES:
        assert len(branch[t]) == 905 - len(deleted) + 2 + 99
        assert (7, 8.0) in [(r[0], r[1]) for r in branch[t]] and (14, 30.0) in [(r[0], r[1]) for r in branch[t]]
    with Lakehouse.open(root) as lh:
        d = {x.table: x for x in lh.diff("dev").tables}
        for t in TABLES:
            assert {"updated": d[t].updated, "deleted": d[t].deleted, "inserted": d[t].inserted} == expected, t
        result = lh.merge("dev")
        assert result.snapshot_id == fork + 1
        for t in TABLES:
            assert rows(lh, t) == branch[t], t  # the target equals the branch, row for row
            assert checksum(lh, t) == sums[t]
            assert rows(lh, t, at=fork) == before[t]  # and time travel still shows it before
            # only the changed rows were written: the updated rows' last values and the new rows still there
            assert inserted_by(lh, t, result.snapshot_id) == expected["updated"] + expected["inserted"], t
    # again from the re-forked branch (the target's files now include the merge's): one more round of changes
    with Lakehouse.open(root, branch="dev") as dev:
        dev.con.execute("UPDATE silver.m SET v = v + 100 WHERE id % 50 = 1")
        dev.con.execute("DELETE FROM silver.m WHERE id >= 20090")
        dev.con.execute("INSERT INTO silver.m VALUES (30000, 3.0, 'again')")
        again = rows(dev, "silver.m")
    with Lakehouse.open(root) as lh:
        lh.merge("dev")
        assert rows(lh, "silver.m") == again
        assert rows(lh, "silver.f") == branch["silver.f"]
