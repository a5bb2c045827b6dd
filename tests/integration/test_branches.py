"""Branches of the lake, against the invariants of docs/branches.md, on the three lake combinations: work on a
branch leaves main as it was; diff is the branch's change; merge is one commit (also under kill -9); conflicts
change nothing; atomic runs publish all or nothing; maintenance on any branch keeps every file another reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airduck.errors import AirduckError, NotFound, RunFailed
from airduck.lake.branches import MergeConflict, ProtectedBranch
from airduck.lakehouse import Lakehouse
from airduck.pipeline.atomic import AuditFailed
from tests.integration.test_pipeline_runs import cli, kill_at_failpoint, orders_config, write_orders

USER_TABLES = ("bronze.orders", "silver.orders")


def sums(lh: Lakehouse, at: int | None = None, tables=USER_TABLES) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent checksum of each table (now, or at snapshot `at`)."""
    clause = f" AT (VERSION => {int(at)})" if at is not None else ""
    out = {}
    for t in tables:
        cols = [r[0] for r in lh.con.execute(f"DESCRIBE SELECT * FROM {t}{clause}").fetchall()
                if not r[0].startswith("_airduck")]
        select = ", ".join(f'"{c}"' for c in cols)
        out[t] = lh.con.execute(f"SELECT count(*), coalesce(sum(hash({select})), 0) FROM {t}{clause}").fetchone()
    return out


def data_files(lh: Lakehouse) -> set[str]:
    return {o.key for o in lh.data_store().list()}


def test_branch_run_diff_merge_and_time_travel(projects):
    root = projects.make(orders_config())
    write_orders(root, "day1.csv", 0, 500)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        before, snap = sums(lh), lh.current_snapshot()
        files = data_files(lh)
        b = lh.create_branch("dev")
        assert (b.base, b.fork_snapshot) == ("main", snap)
        assert data_files(lh) == files  # no data file copied or written
    write_orders(root, "day2.csv", 400, 200, negative_every=0)  # 100 rows again (same values), 100 new
    (root / "data" / "orders" / "day2.csv").write_text(
        (root / "data" / "orders" / "day2.csv").read_text().replace(",400.25,", ",1.5,"))  # order 400: updated
    with Lakehouse.open(root, branch="dev") as dev:
        assert dev.branch == "dev"
        assert dev.run().ok
        branch_sums = sums(dev)
        assert branch_sums["silver.orders"][0] == 600
    with Lakehouse.open(root) as lh:
        assert lh.current_snapshot() == snap and sums(lh) == before  # main untouched
        [listed] = lh.branches()
        assert listed.name == "dev" and listed.head_snapshot > snap and listed.tables_changed
        [registered] = lh.branches(heads=False)  # the registry alone (the web's branch menu): no head read
        assert (registered.name, registered.base_snapshot, registered.head_snapshot) == ("dev", snap, None)
        d = lh.diff("dev")
        by = {t.table: t for t in d.tables}
        assert (by["bronze.orders"].inserted, by["bronze.orders"].deleted) == (200, 0)
        silver = by["silver.orders"]
        assert (silver.inserted, silver.deleted, silver.updated) == (100, 0, 1)
        assert silver.sample and all(r["order_id"] >= 400 for r in silver.sample)
        assert d.conflicts == []
        assert set(by) <= {"bronze.orders", "silver.orders", "airduck.bronze_files", "airduck.silver_state",
                           "airduck.watermarks", "bronze.orders__rejects"}
        assert lh.diff("dev", table="silver.orders").tables[0].table == "silver.orders"
        dry = lh.merge("dev", dry_run=True)
        assert dry.snapshot_id is None and lh.current_snapshot() == snap
        result = lh.merge("dev")
        assert result.snapshot_id == snap + 1  # one commit
        assert sums(lh) == branch_sums  # main now equals the branch
        assert sums(lh, at=snap) == before  # time travel to before the merge
        [merge_snap] = [s for s in lh.snapshots() if s.snapshot_id == result.snapshot_id]
        assert "dev" in merge_snap.message and merge_snap.extra_info["merge"] == "dev"
        # the branch starts again from the merge: nothing left to merge
        assert lh.diff("dev").tables == []
        assert lh.merge("dev").snapshot_id is None
        lh.delete_branch("dev")
        assert lh.branches() == []
        assert sums(lh) == branch_sums  # deleting the branch deleted no file main reads
    with pytest.raises(NotFound, match="no branch 'dev'"):
        Lakehouse.open(root, branch="dev").tables()


def test_conflict_is_refused_and_both_sides_are_intact(projects, tmp_path):
    root = projects.make(orders_config())
    write_orders(root, "day1.csv", 0, 300)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        lh.create_branch("left")
    write_orders(root, "day2.csv", 300, 50)
    with Lakehouse.open(root, branch="left") as left:
        assert left.run().ok
        left_sums, left_head = sums(left), left.current_snapshot()
    write_orders(root, "day3.csv", 350, 70)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok  # main changes the same tables (it reads day2 and day3)
        main_sums, main_snap = sums(lh), lh.current_snapshot()
        with pytest.raises(MergeConflict) as info:
            lh.merge("left")
        assert set(USER_TABLES) <= set(info.value.tables)
        assert lh.current_snapshot() == main_snap and sums(lh) == main_sums
        assert set(USER_TABLES) <= set(lh.diff("left").conflicts)
    proc = cli(root, "merge", "left")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "changed on both" in err and "nothing was merged" in err
    with Lakehouse.open(root, branch="left") as left:
        assert left.current_snapshot() == left_head and sums(left) == left_sums


def test_atomic_run_failed_gate_and_audit_keep_main_and_the_branch(projects):
    root = projects.make({**orders_config(on_fail="fail"),
                          "audit": {"no_big_orders": "SELECT * FROM silver.orders WHERE amount > 450"}})
    write_orders(root, "day1.csv", 1, 300)
    with Lakehouse.open(root) as lh:
        assert lh.run(atomic=True).ok  # passes its audit: merged
        assert lh.branches() == []  # the run's branch is gone once merged
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 300
        before, snap = sums(lh), lh.current_snapshot()
        write_orders(root, "day2.csv", 1000, 100, negative_every=25)  # breaks the gate
        with pytest.raises(RunFailed, match="amount_not_negative") as info:
            lh.run(atomic=True)
        assert "is kept" in info.value.message
        assert lh.current_snapshot() == snap and sums(lh) == before
        [kept] = lh.branches()
        assert kept.name.startswith("run-") and kept.name in info.value.message
        with Lakehouse.open(root, branch=kept.name) as b:  # bronze of the failed run, for inspection
            assert b.con.execute("SELECT count(*) FROM bronze.orders").fetchone()[0] == 400
        lh.delete_branch(kept.name)
        (root / "data" / "orders" / "day2.csv").unlink()
        write_orders(root, "day3.csv", 440, 20)  # amounts up to 459.25: the audit fails
        with pytest.raises(AuditFailed, match="no_big_orders") as audit:
            lh.run(atomic=True)
        assert lh.current_snapshot() == snap and sums(lh) == before
        [kept] = lh.branches()
        assert kept.name in audit.value.message


def step_status(result) -> dict[str, str]:
    """Step id -> its status, or `unchanged` for a step skipped as unchanged (not run at all)."""
    return {r.step_id: "unchanged" if (r.details or {}).get("reason") == "unchanged" else str(r.status)
            for r in result.steps if r.step_id}


def ran_because(result) -> dict[str, str | None]:
    return {r.step_id: (r.details or {}).get("ran_because") for r in result.steps if r.step_id}


def test_a_branch_starts_with_its_base_step_state_and_a_merge_resets_it(projects):
    from airduck.lake.branches import on
    from airduck.pipeline.freshness import StepStateStore

    root = projects.make(orders_config())
    write_orders(root, "day1.csv", 0, 300)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        main_state = StepStateStore(lh.project).load()
        lh.create_branch("dev")
        project = lh.project
    dev_store = StepStateStore(on(project, "dev"))
    assert {s: st.fingerprint for s, st in dev_store.load().items()} == {
        s: st.fingerprint for s, st in main_state.items()}
    with Lakehouse.open(root, branch="dev") as dev:
        assert step_status(dev.run())["silver:orders"] == "unchanged"  # nothing new: skipped as on main
    write_orders(root, "day2.csv", 300, 50)
    with Lakehouse.open(root, branch="dev") as dev:
        assert step_status(dev.run())["silver:orders"] == "ok"  # new rows on the branch: it runs
        assert dev.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 350
    with Lakehouse.open(root) as lh:
        assert lh.merge("dev").snapshot_id is not None
        main_state = StepStateStore(lh.project).load()
        # forked again from the merge commit: the branch's rows are main's (its old ones named its old catalog's ids)
        assert {s: st.fingerprint for s, st in dev_store.load().items()} == {
            s: st.fingerprint for s, st in main_state.items()}
        # the merge wrote bronze.orders and silver.orders: the step runs once more (and finds nothing new)
        assert ran_because(lh.run())["silver:orders"].startswith("bronze.orders changed")
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 350
        lh.delete_branch("dev")
    assert dev_store.load() == {}  # a new branch of that name starts from its own base


def test_protected_main_takes_only_merges(local_projects):
    root = local_projects.make({**orders_config(), "branches": {"protected": ["main"]}})
    write_orders(root, "day1.csv", 0, 100)
    with Lakehouse.open(root) as lh:
        with pytest.raises(ProtectedBranch, match="protected"):
            lh.run()
        assert lh.run(atomic=True).ok  # the merge of an atomic run may write
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 100
        with pytest.raises(ProtectedBranch):
            lh.tag("v1")
        lh.create_branch("work")
    with Lakehouse.open(root, branch="work") as work:
        work.tag("on-work")  # a branch that is not protected is written as usual
    proc = cli(root, "run", "-q")
    assert proc.wait(timeout=120) == 1 and "protected" in proc.stderr.read()


@pytest.mark.parametrize("point", ["before-commit", "merge:before-commit", "merge:after-commit"])
def test_kill_9_during_an_atomic_run_leaves_main_before_or_after(local_projects, tmp_path, point):
    root = local_projects.make(orders_config())
    write_orders(root, "day1.csv", 0, 200)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        before, snap = sums(lh), lh.current_snapshot()
    write_orders(root, "day2.csv", 200, 100)
    kill_at_failpoint(root, point, tmp_path / f"{point}.reached", timeout=180, args=("run", "--atomic", "-q"))
    with Lakehouse.open(root) as lh:
        now = sums(lh)
        if point == "merge:after-commit":
            assert lh.current_snapshot() == snap + 1 and now["silver.orders"][0] == 300  # after: all of it
        else:
            assert lh.current_snapshot() == snap and now == before  # before: none of it
        assert [b.name.startswith("run-") for b in lh.branches()] == [True]  # kept for inspection
        for b in lh.branches():
            lh.delete_branch(b.name)
        assert lh.run(atomic=True).ok  # and the next run finishes the job
        assert sums(lh)["silver.orders"][0] == 300


@pytest.mark.parametrize("order", ["main-first", "branch-first"])
def test_maintenance_keeps_every_file_another_branch_or_tag_reads(projects, order):
    config = {**orders_config(), "lake": {"maintenance": {"expire_older_than_days": 0, "cleanup_older_than_days": 0}}}
    root = projects.make(config)
    write_orders(root, "day1.csv", 0, 300)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        lh.tag("day1")
        lh.create_branch("side")
    write_orders(root, "day2.csv", 250, 100)
    with Lakehouse.open(root, branch="side") as side:
        assert side.run().ok
        side.tag("side-day2")
    write_orders(root, "day3.csv", 280, 90)
    with Lakehouse.open(root) as lh:
        assert lh.run(full_refresh=True).ok  # rewrites silver: main's old files are only the branch's now
    expect: dict[str, dict] = {}

    def readback() -> dict:
        out = {}
        for branch in ("main", "side"):
            with Lakehouse.open(root, branch=branch) as b:
                out[branch] = sums(b)
                for tag in b.tags():
                    out[f"{branch}@{tag.name}"] = sums(b, at=tag.snapshot_id)
        return out

    expect = readback()
    later = datetime.now(UTC) + timedelta(days=30)
    for branch in (("main", "side") if order == "main-first" else ("side", "main")):
        with Lakehouse.open(root, branch=branch) as b:
            steps = {s.name: s for s in b.maintain(steps=("expire", "cleanup"), now=later)}
            assert steps["expire"].done.startswith("expired")
        assert readback() == expect
    with Lakehouse.open(root) as lh:
        lh.delete_branch("side")
        assert readback_main(root) == expect["main"]


def readback_main(root: Path) -> dict:
    with Lakehouse.open(root) as lh:
        return sums(lh)


def two_tables_config() -> dict:
    config = orders_config()
    config["sources"]["returns"] = {"type": "files", "path": "data/returns/*.csv", "format": "csv"}
    config["silver"]["returns"] = {**config["silver"]["orders"], "from": "returns", "expectations": []}
    return config


def test_two_atomic_runs_disjoint_tables_merge_same_table_is_told(projects):
    root = projects.make(two_tables_config())
    write_orders(root, "day1.csv", 0, 100)
    (root / "data" / "returns").mkdir(parents=True)
    (root / "data" / "returns" / "r1.csv").write_text((root / "data" / "orders" / "day1.csv").read_text())
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        # two runs forked from the same main, as two atomic runs at once are
        lh.create_branch("a")
        lh.create_branch("b")
        lh.create_branch("c")
    write_orders(root, "day2.csv", 100, 50)
    (root / "data" / "returns" / "r2.csv").write_text((root / "data" / "orders" / "day2.csv").read_text())
    for name, select in (("a", ["+silver.orders"]), ("b", ["+silver.returns"]), ("c", ["+silver.orders"])):
        with Lakehouse.open(root, branch=name) as b:
            assert b.run(select).ok
    with Lakehouse.open(root) as lh:
        lh.merge("a")
        lh.merge("b")  # disjoint tables: both merge (airduck's own state rows differ)
        counts = {t: lh.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("silver.orders",
                                                                                          "silver.returns")}
        assert counts == {"silver.orders": 150, "silver.returns": 150}
        with pytest.raises(MergeConflict, match=r"silver\.orders"):
            lh.merge("c")  # the same table as a: told, nothing merged
    # and two real atomic runs at once on the same table: one merges, the other is told (or waits its turn)
    write_orders(root, "day3.csv", 150, 10)
    procs = [cli(root, "run", "--atomic", "-q", "-s", "+silver.orders") for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or "changed on both" in err or "nothing was merged" in err, err
    with Lakehouse.open(root) as lh:
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 160


def test_cli_branch_commands(local_projects):
    root = local_projects.make(orders_config())
    write_orders(root, "day1.csv", 0, 50)
    assert cli(root, "run", "-q").wait(timeout=120) == 0
    p = cli(root, "branch", "create", "feature")
    assert p.wait(timeout=60) == 0 and "created branch feature" in p.stdout.read()
    write_orders(root, "day2.csv", 50, 5)
    assert cli(root, "run", "-q", "--branch", "feature").wait(timeout=120) == 0
    p = cli(root, "tables", "--json", env={"AIRDUCK_BRANCH": "feature"})
    assert p.wait(timeout=60) == 0 and '"silver"' in p.stdout.read()
    p = cli(root, "diff", "main..feature", "--json")
    out = p.stdout.read()
    assert p.wait(timeout=60) == 0 and '"silver.orders"' in out and '"inserted": 5' in out
    p = cli(root, "diff", "main..feature")  # the counts; new rows only when asked for
    out = p.stdout.read()
    assert p.wait(timeout=60) == 0 and "silver.orders" in out and "new rows (sample)" not in out
    p = cli(root, "diff", "main..feature", "--table", "silver.orders")
    out = p.stdout.read()
    assert p.wait(timeout=60) == 0 and "silver.orders: new rows (sample)" in out and "order_id" in out
    assert "_airduck" not in out and "_load_id" not in out
    p = cli(root, "branch", "list")
    assert p.wait(timeout=60) == 0 and "feature" in p.stdout.read()
    p = cli(root, "merge", "feature")
    assert p.wait(timeout=60) == 0 and "merged feature into main" in p.stdout.read()
    p = cli(root, "head", "silver.orders", "-n", "100", "--json")
    assert p.wait(timeout=60) == 0 and p.stdout.read().count('"order_id"') == 55
    p = cli(root, "diff", "feature")  # forked again from the merge: nothing to show
    assert p.wait(timeout=60) == 0 and "feature has changed nothing since its fork" in p.stdout.read()
    p = cli(root, "branch", "delete", "feature")
    assert p.wait(timeout=60) == 0
    p = cli(root, "tables", "--branch", "nope")
    assert p.wait(timeout=60) == 1 and "no branch 'nope'" in p.stderr.read()
    with pytest.raises(AirduckError, match="not a branch name"):
        Lakehouse.open(root, branch="Bad Name")
