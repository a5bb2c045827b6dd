"""The run summary's notes: one line per failed or warned table, the table named once."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

from airduck.cli import render
from airduck.pipeline.records import RunRecord

cli_app = importlib.import_module("airduck.cli.app")  # the package exports the Typer app under this name


def test_a_failed_steps_note_names_its_table_once():
    error = "silver.a: the generated SQL failed: Conversion Error: Could not convert string 'x' to INT32"
    rec = RunRecord(run_id="r1", status="failed", started_at=datetime.now(UTC), finished_at=datetime.now(UTC),
                    steps=[{"layer": "silver", "table_name": "silver.a", "status": "failed", "rows_in": 0,
                            "rows_out": 0, "rows_quarantined": 0, "rows_rejected": 0, "error": error}])
    with render.console.capture() as cap:
        cli_app._run_summary(rec)
    out = " ".join(cap.get().split())
    assert "silver.a: the generated SQL failed" in out
    assert "silver.a: silver.a:" not in out, out
