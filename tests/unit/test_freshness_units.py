"""Step fingerprints' configuration part: what changes it and what does not (no lake needed)."""

from __future__ import annotations

from pathlib import Path

import yaml

from airduck.core.model import Dataset, DatasetKind, StepKind
from airduck.core.plan import Step
from airduck.pipeline.freshness import Fingerprint, StepFreshness
from airduck.project import load_project


def digest(root: Path, serve: dict, step: Step) -> str:
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "t", "serve": serve}))
    return StepFreshness(load_project(root), con=None).config_digest(step)  # type: ignore[arg-type]


def test_served_table_digest_follows_the_target_but_not_its_password(tmp_path):
    step = Step("serve:orders", StepKind.SERVE, "orders", (Dataset.lake("gold.orders"),),
                (Dataset(DatasetKind.POSTGRES_MART, "public.orders"),))

    def serve(dsn: str, **table: object) -> dict:
        return {"postgres": {"dsn": dsn, "tables": [{"table": "gold.orders", **table}]}}

    base = digest(tmp_path, serve("postgresql://u:first-pw@127.0.0.1:5432/marts"), step)
    assert digest(tmp_path, serve("postgresql://u:other-pw@127.0.0.1:5432/marts"), step) == base
    assert digest(tmp_path, serve("host=127.0.0.1 dbname=marts user=u password='first pw'"), step) == digest(
        tmp_path, serve("host=127.0.0.1 dbname=marts user=u password=x"), step)
    assert digest(tmp_path, serve("postgresql://u:first-pw@127.0.0.1:5432/other"), step) != base
    assert digest(tmp_path, serve("postgresql://u:first-pw@127.0.0.1:5432/marts", primary_key=["id"]), step) != base


def test_fingerprint_digest_covers_config_inputs_and_outputs():
    fp = Fingerprint("c", {"silver.a": 3}, {"gold.x": 5})
    assert Fingerprint.from_dict(fp.to_dict()).digest == fp.digest
    assert Fingerprint("c2", {"silver.a": 3}, {"gold.x": 5}).digest != fp.digest
    assert Fingerprint("c", {"silver.a": 4}, {"gold.x": 5}).digest != fp.digest
    assert Fingerprint("c", {"silver.a": 3}, {"gold.x": None}).digest != fp.digest


def test_step_state_crosses_a_branch_only_where_its_versions_mean_the_same(tmp_path):
    """carry_over / publish_state on a real state store (docs/branches.md, "Step state of branches")."""
    from airduck.lake.branches import on
    from airduck.pipeline.freshness import StepStateStore, carry_over, publish_state

    (tmp_path / "airduck.yml").write_text(yaml.safe_dump({"name": "t"}))
    (tmp_path / ".airduck").mkdir()
    project = load_project(tmp_path)
    main, branch = StepStateStore(project), StepStateStore(on(project, "run-x"))
    main.save_many({"silver:a": (Fingerprint("c", {"bronze.a": 3}, {"silver.a": 4}), "r1"),
                    "silver:late": (Fingerprint("c", {"bronze.b": 11}, {"silver.b": 11}), "r2")})
    branch.save("silver:stale", Fingerprint("c", {}, {"silver.z": 99}), "old")  # a deleted branch of that name
    # forked at snapshot 10: silver:late names snapshot 11, which is another snapshot in the branch's catalog
    assert carry_over(project, None, "run-x", 10) == 1
    assert {s: st.fingerprint for s, st in branch.load().items()} == {"silver:a": main.load()["silver:a"].fingerprint}

    # the run on the branch (snapshots 11..16), merged into main as snapshot 20
    main.save("gold:x", Fingerprint("g", {"silver.a": 4}, {"gold.x": 6}), "r1")
    branch.save_many({
        "silver:b": (Fingerprint("c", {"bronze.b": 11}, {"silver.b": 12}), "run"),  # as the run left them
        "gold:x": (Fingerprint("g", {"silver.a": 13}, {"gold.x": 14}), "run"),  # silver.a changed again at 15
        "gold:y": (Fingerprint("g", {"silver.c": 5}, {"gold.y": 14}), "run"),  # read shared history
        "gold:z": (Fingerprint("g", {}, {"gold.z": 16}), "run"),  # gold.z was not merged
    })
    head = {"bronze.b": 11, "silver.b": 12, "silver.a": 15, "gold.x": 14, "gold.y": 14, "silver.c": 5, "gold.z": 16}
    assert publish_state(project, "run-x", None, fork=10, head=head, snapshot=20, run_id="run",
                         merged=["bronze.b", "silver.b", "silver.a", "gold.x", "gold.y"]) == (2, 2)
    state = main.load()
    assert state["silver:b"].detail == Fingerprint("c", {"bronze.b": 20}, {"silver.b": 20})
    assert state["gold:y"].detail == Fingerprint("g", {"silver.c": 5}, {"gold.y": 20})
    assert state["silver:a"].run_id == "r1"  # carried over, not the run's: main's own row stays
    assert "gold:x" not in state and "gold:z" not in state  # no counterpart on main: they run there next time
    assert "silver:late" in state
    branch.forget()
    assert branch.load() == {} and set(main.load()) == set(state)
