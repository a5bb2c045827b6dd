"""A merge reads the branch's deletion feed only from the files that lost rows since the fork (docs/branches.md,
"Merge"): DuckLake's feed would read every file that has a delete file at all, so a table's history of deletions
(on main, before the fork) would cost every later merge. The files come from the branch's catalog; these tests
check that the pruned feed lists exactly what the whole feed lists over random histories (delete files written,
extended and replaced, deletions kept in the catalog, whole files dropped, rows inserted and deleted again on the
branch), and that it opens only the files that changed."""

from __future__ import annotations

import random
import re

import pytest

from airduck.lake import branches as B
from airduck.lakehouse import Lakehouse

WHERE = "filename AS f, file_row_number AS p"


def _pair(lh: Lakehouse, name: str = "dev"):
    b = B.get(lh.project, name)
    con = B._open_pair(lh.project, b, "main")
    head = int(con.execute(f"SELECT id FROM {B.SOURCE}.current_snapshot()").fetchone()[0])
    return con, b.fork_snapshot, head


def _both(con, table: str, fork: int, head: int) -> tuple[list[tuple], list[tuple], list[str] | None]:
    lost = B._files_that_lost_rows(con, B.SOURCE, table, fork, head)
    whole = B._feed("ducklake_table_deletions", B.SOURCE, table, fork + 1, head, WHERE)
    pruned = B._feed("ducklake_table_deletions", B.SOURCE, table, fork + 1, head, WHERE, lost)
    return sorted(con.execute(whole).fetchall()), sorted(con.execute(pruned).fetchall()), lost


def _files_read(con, sql: str) -> int:
    plan = "\n".join(str(r[1]) for r in con.execute("EXPLAIN ANALYZE " + sql).fetchall())
    return sum(int(n) for n in re.findall(r"Total Files Read: (\d+)", plan))


def _history(lh: Lakehouse, table: str, rnd: random.Random, files: int = 8) -> None:
    """main: a table of `files` data files, with deletions in every file (delete files) and a few kept inlined."""
    lh.con.execute(f"CREATE TABLE {table} (id BIGINT, v DOUBLE)")
    for i in range(files):
        lh.con.execute(f"INSERT INTO {table} SELECT range, range FROM range({i * 1000}, {(i + 1) * 1000})")
    lh.con.execute(f"DELETE FROM {table} WHERE id % 10 = {rnd.randrange(10)}")  # 100 rows a file: delete files
    lh.con.execute(f"DELETE FROM {table} WHERE id IN ({rnd.randrange(files * 1000)}, {rnd.randrange(files * 1000)})")
    lh.con.execute(f"INSERT INTO {table} SELECT 900000 + range, 1 FROM range(3)")  # inlined rows


def _branch_changes(dev: Lakehouse, table: str, rnd: random.Random, files: int = 8) -> None:
    """A random mix of commits on the branch: small and large deletions in some files, updates, inserts, rows of
    the branch deleted again, a whole file's rows deleted."""
    for _ in range(rnd.randint(2, 5)):
        kind = rnd.choice(["few", "many", "update", "insert", "again", "file"])
        f = rnd.randrange(files)
        if kind == "few":  # kept in the catalog (inlined deletions)
            dev.con.execute(f"DELETE FROM {table} WHERE id IN ({f * 1000 + rnd.randrange(1000)})")
        elif kind == "many":  # a delete file extended or replaced
            dev.con.execute(f"DELETE FROM {table} WHERE id >= {f * 1000} AND id < {f * 1000 + 400} "
                            f"AND id % 3 = {rnd.randrange(3)}")
        elif kind == "update":
            dev.con.execute(f"UPDATE {table} SET v = v + 1 WHERE id >= {f * 1000} AND id < {f * 1000 + 50}")
        elif kind == "insert":
            dev.con.execute(f"INSERT INTO {table} SELECT 500000 + range, 2 FROM range({rnd.choice([2, 300])})")
        elif kind == "again":
            dev.con.execute(f"DELETE FROM {table} WHERE id >= 500000 AND id % 2 = 0")
        else:  # every row of one file
            dev.con.execute(f"DELETE FROM {table} WHERE id >= {f * 1000} AND id < {(f + 1) * 1000}")


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_pruned_deletion_feed_lists_what_the_whole_feed_lists(local_projects, seed: int):
    rnd = random.Random(seed)
    root = local_projects.make({"lake": {"data_inlining_row_limit": 10}})
    with Lakehouse.open(root) as lh:
        _history(lh, "silver.t", rnd)
        lh.create_branch("dev")
    with Lakehouse.open(root, branch="dev") as dev:
        _branch_changes(dev, "silver.t", rnd)
        want = sorted(dev.con.execute("SELECT * FROM silver.t").fetchall())
    with Lakehouse.open(root) as lh:
        con, fork, head = _pair(lh)
        try:
            whole, pruned, lost = _both(con, "silver.t", fork, head)
        finally:
            con.close()
        assert lost is not None and pruned == whole, (seed, lost)
        lh.merge("dev")  # and the merge through it gives main exactly the branch
        assert sorted(lh.con.execute("SELECT * FROM silver.t").fetchall()) == want


def test_a_merge_reads_only_the_files_that_changed_not_the_tables_history(projects):
    """main deleted rows in every one of 12 files before the fork; the branch updates rows of one file: the pruned
    feed opens that file only (the whole feed opens every file with a delete file), and lists the same rows."""
    root = projects.make({"lake": {"data_inlining_row_limit": 0}})
    with Lakehouse.open(root) as lh:
        _history(lh, "silver.t", random.Random(7), files=12)
        lh.create_branch("dev")
    with Lakehouse.open(root, branch="dev") as dev:
        dev.con.execute("UPDATE silver.t SET v = -v WHERE id >= 3000 AND id < 3500")
    with Lakehouse.open(root) as lh:
        con, fork, head = _pair(lh)
        try:
            whole, pruned, lost = _both(con, "silver.t", fork, head)
            assert pruned == whole and len(pruned) >= 400
            assert lost is not None and len([n for n in lost if n.endswith(".parquet")]) == 1, lost
            lost = B._files_that_lost_rows(con, B.SOURCE, "silver.t", fork, head)
            read_whole = _files_read(con, B._feed("ducklake_table_deletions", B.SOURCE, "silver.t", fork + 1, head,
                                                  WHERE))
            read_pruned = _files_read(con, B._feed("ducklake_table_deletions", B.SOURCE, "silver.t", fork + 1,
                                                   head, WHERE, lost))
        finally:
            con.close()
        assert read_whole >= 12 and read_pruned == 1, (read_whole, read_pruned)
        merged = lh.merge("dev")
        assert merged.snapshot_id is not None
        assert lh.con.execute("SELECT count(*) FROM silver.t WHERE v < 0 AND id >= 3000").fetchone()[0] >= 400
