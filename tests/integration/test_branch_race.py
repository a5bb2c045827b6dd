"""Two creates of one branch at the same moment (two threads, two `airduck branch create` processes): exactly one
makes it, the other is told the branch exists (an airduck BranchError with a hint, no raw catalog error), and no
half-made branch or copy of the loser is left; `--if-missing` creates that race both succeed. On the SQLite and the
PostgreSQL catalog."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from airduck.lake import branches
from airduck.lake.branches import BranchError
from airduck.lake.connection import branch_file
from airduck.lakehouse import Lakehouse
from tests.integration.test_pipeline_runs import cli

COMBOS = ["sqlite-local", "pg-local"]


def rows(root, branch: str | None = None) -> int:
    with Lakehouse.open(root, branch=branch) as lh:
        return lh.con.execute("SELECT count(*) FROM t").fetchone()[0]


def race(*calls):
    """Run the calls at the same moment, one thread each; their results (or the exceptions they raised)."""
    barrier = threading.Barrier(len(calls))
    out: list = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:  # the outcome is what the test looks at
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a create hung"
    return out


@pytest.mark.parametrize("lake_combo", COMBOS)
def test_two_creates_of_one_branch_at_once_one_wins_and_nothing_half_made_is_left(projects):
    root = projects.make({})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE TABLE t AS SELECT range AS a FROM range(10)")
        lh.create_branch("other")
        project = lh.project
    with Lakehouse.open(root, branch="other") as other:
        other.con.execute("INSERT INTO t SELECT range FROM range(5)")
    expected = {"main": 10, "other": 15}  # the two sources differ: a loser's copy over the winner's would show
    for name in ("dev", "dev-2", "dev-3"):
        out = race(lambda n=name: branches.create(project, n, "main"),
                   lambda n=name: branches.create(project, n, "other"))
        made = [o for o in out if isinstance(o, branches.Branch)]
        lost = [o for o in out if not isinstance(o, branches.Branch)]
        assert len(made) == 1 and len(lost) == 1, out
        assert isinstance(lost[0], BranchError), repr(lost[0])
        assert lost[0].message == f"branch '{name}' already exists"
        assert f"airduck branch delete {name}" in lost[0].hint
        winner = made[0]
        # the registry and the catalog copy are the winner's: its fork, its source's rows
        assert branches.get(project, name).base == winner.base
        assert branches.head_snapshot(project, name) == winner.fork_snapshot
        assert rows(root, name) == expected[winner.base]
        if projects.combo == "sqlite-local":  # no temporary copy of the loser left beside the branch's catalog
            folder = branch_file(project, name).parent
            assert sorted(p.name for p in folder.glob(f"{name}.*") if not p.name.endswith(".lock")) == \
                [f"{name}.sqlite"]
    with Lakehouse.open(root) as lh:
        assert [b.name for b in lh.branches()] == ["dev", "dev-2", "dev-3", "other"]
    if projects.combo == "pg-local":  # one schema per branch, no half-made one
        dsn = project.config.lake.catalog
        with psycopg.connect(dsn) as conn:
            schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE "
                                                  "'airduck_branch_%' ORDER BY 1").fetchall()]
        assert schemas == ["airduck_branch_dev", "airduck_branch_dev_2", "airduck_branch_dev_3",
                           "airduck_branch_other"]
    assert rows(root) == 10  # main as it was


def both(root, *args: str) -> list[tuple[int, str, str]]:
    """Start two `airduck ARGS` processes at once; their (exit code, stdout, stderr)."""
    procs = [cli(root, *args), cli(root, *args)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        out.append((p.returncode, stdout, stderr))
    return out


@pytest.mark.parametrize("lake_combo", COMBOS)
def test_two_branch_create_commands_at_once(projects):
    root = projects.make({})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE TABLE t AS SELECT range AS a FROM range(7)")
    for name in ("dev", "dev-2"):
        out = sorted(both(root, "branch", "create", name))
        assert [rc for rc, _, _ in out] == [0, 1], out
        assert "Traceback" not in out[1][2] and "Error" not in out[1][2], out[1][2]
        assert f"branch '{name}' already exists" in out[1][2] and f"airduck branch delete {name}" in out[1][2]
        assert rows(root, name) == 7
    for name in ("run-a", "run-b"):  # retries of an orchestrated run's task: both go on with the one branch
        out = both(root, "branch", "create", name, "--if-missing", "--json")
        assert [rc for rc, _, _ in out] == [0, 0], out
        made = [json.loads(stdout) for _, stdout, _ in out]
        assert {(m["name"], m["base"], m["fork_snapshot"]) for m in made} == {(name, "main", made[0]["fork_snapshot"])}
        assert rows(root, name) == 7
    listed = cli(root, "branch", "list", "--json")
    stdout, stderr = listed.communicate(timeout=120)
    assert listed.returncode == 0, stderr
    assert [b["name"] for b in json.loads(stdout)] == ["dev", "dev-2", "run-a", "run-b"]
