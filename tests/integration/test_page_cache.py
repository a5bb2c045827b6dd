"""Pages of tables are kept by snapshot id (`Lakehouse.rows`, the API's and the browser's table pages): a page read
again at the same head comes from the cache, and every commit (another process's, a rollback, a branch's own)
gives a new head, so the next read shows it. On the three lake combinations and on a branch."""

from __future__ import annotations

import subprocess
import sys

from airduck.lakehouse import Lakehouse


def ids(result) -> list[int]:
    return sorted(r[0] for r in result.rows)


def _insert_elsewhere(root, table: str, value: int, branch: str | None = None) -> None:
    """A commit by another process (the cache must see it without being told)."""
    code = ("import sys; from airduck.lakehouse import Lakehouse\n"
            f"with Lakehouse.open(sys.argv[1], branch={branch!r}) as lh:\n"
            f"    lh.con.execute('INSERT INTO {table} VALUES ({value})')\n")
    subprocess.run([sys.executable, "-c", code, str(root)], check=True, timeout=300)


def test_pages_are_kept_per_snapshot_and_every_commit_is_seen(projects):
    root = projects.make()
    with Lakehouse.open(root) as w:
        w.con.execute("CREATE TABLE silver.c (id BIGINT)")
        w.con.execute("INSERT INTO silver.c SELECT range FROM range(5)")
        first = w.current_snapshot()
        w.tag("five", snapshot=first)  # a commit too (airduck.tags)
        head = w.current_snapshot()
    with Lakehouse.open(root) as lh:
        session = lh.read_session()
        assert session.head()[0] == head  # the probe asks the catalog itself
        page = lh.rows("silver.c", limit=3)
        assert ids(page) == [0, 1, 2] and page.truncated
        hits = session.pages.hits
        again = lh.rows("silver.c", limit=3)
        assert again.rows == page.rows and session.pages.hits == hits + 1  # from the cache
        assert ids(lh.rows("silver.c", limit=3, offset=3)) == [3, 4]  # another page: read

        _insert_elsewhere(root, "silver.c", 100)  # a commit of another process: a new head
        assert session.head()[0] == head + 1
        assert ids(lh.rows("silver.c", limit=10)) == [0, 1, 2, 3, 4, 100]
        # at a snapshot id: kept too, and still the snapshot's rows
        assert ids(lh.rows("silver.c", limit=10, at=first)) == [0, 1, 2, 3, 4]
        hits = session.pages.hits
        assert ids(lh.rows("silver.c", limit=10, at=str(first))) == [0, 1, 2, 3, 4]
        assert session.pages.hits == hits + 1
        # a tag may move: read each time
        assert ids(lh.rows("silver.c", limit=10, at="five")) == [0, 1, 2, 3, 4]
        with Lakehouse.open(root) as w:
            w.untag("five")
            w.tag("five", snapshot=head + 1)
        assert ids(lh.rows("silver.c", limit=10, at="five")) == [0, 1, 2, 3, 4, 100]
        # a rollback is a commit: the head moves and the page shows the rolled-back table
        with Lakehouse.open(root) as w:
            w.rollback("silver.c", first)
        assert ids(lh.rows("silver.c", limit=10)) == [0, 1, 2, 3, 4]
        arrow = lh.rows("silver.c", limit=10, arrow=True).arrow
        assert sorted(arrow.column("id").to_pylist()) == [0, 1, 2, 3, 4]

    # a branch: its own catalog's head, its own pages
    with Lakehouse.open(root) as w:
        w.create_branch("dev")
    with Lakehouse.open(root, branch="dev") as dev, Lakehouse.open(root) as main:
        before_dev, before_main = dev.read_session().head()[0], main.read_session().head()[0]
        assert ids(dev.rows("silver.c", limit=10)) == [0, 1, 2, 3, 4]
        assert ids(main.rows("silver.c", limit=10)) == [0, 1, 2, 3, 4]
        _insert_elsewhere(root, "silver.c", 7, branch="dev")
        assert dev.read_session().head()[0] == before_dev + 1 and main.read_session().head()[0] == before_main
        assert ids(dev.rows("silver.c", limit=10)) == [0, 1, 2, 3, 4, 7]
        assert ids(main.rows("silver.c", limit=10)) == [0, 1, 2, 3, 4]
        # main commits as often as dev did, then dev is made again from main: the same head snapshot id as the
        # old dev's, other rows; a Lakehouse kept open on dev shows the new branch's
        _insert_elsewhere(root, "silver.c", 8)
        assert main.read_session().head()[0] == dev.read_session().head()[0]
        with Lakehouse.open(root) as w:
            w.delete_branch("dev")
            w.create_branch("dev")
        assert ids(dev.rows("silver.c", limit=10)) == [0, 1, 2, 3, 4, 8]


def test_the_cache_is_bounded():
    from airduck.lake.session import PageCache

    cache = PageCache(pages=3, rows=100)
    for i in range(5):
        cache.put(("t", i), i, 10)
    assert len(cache) == 3 and cache.get(("t", 0)) is None and cache.get(("t", 4)) == 4
    cache.put(("big",), "x", 60)  # more than a quarter of the rows budget: not kept
    assert cache.get(("big",)) is None
    for i in range(10):
        cache.put(("r", i), i, 20)  # the rows budget: at most 100 rows kept
    assert sum(1 for i in range(10) if cache.get(("r", i)) is not None) * 20 <= 100
