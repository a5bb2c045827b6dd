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
