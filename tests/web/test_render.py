"""The browser's formatting helpers and the lineage shaping, without a server (fast)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from airduck.api.web import graph
from airduck.api.web.pages import _safe_next
from airduck.api.web.render import cell, number, seconds, size


def test_numbers_sizes_durations_and_cells():
    assert number(1234567) == "1,234,567" and number(Decimal("12")) == "12" and number(2.5) == "2.50"
    assert size(512) == "512 B" and size(2048) == "2.0 KB" and size(5 * 1024**3) == "5.0 GB"
    assert seconds(3.21) == "3.2 s" and seconds(119.6) == "2 min 0 s" and seconds(61) == "1 min 1 s"
    assert cell("x" * 300, 10) == "x" * 9 + "…" and cell(b"\x00\x01") == "0001"
    assert cell(dt.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05" and cell({"a": [1]}) == '{"a": [1]}'


def test_sign_in_sends_back_only_to_a_path_of_this_site():
    for bad in ("//evil.example", "https://evil.example/x", "\\\\evil", "/\\evil", "", None, "javascript:alert(1)"):
        assert _safe_next(bad) == "/"
    assert _safe_next("/tables/silver.orders?tab=preview") == "/tables/silver.orders?tab=preview"


def test_steps_become_edges_between_datasets():
    g = {"nodes": [{"id": "files:in/*.csv", "kind": "source", "name": "in/*.csv", "label": "files: in/*.csv"},
                   {"id": "ingest:orders", "kind": "step", "name": "orders", "layer": "bronze"},
                   {"id": "bronze.orders", "kind": "table", "name": "bronze.orders", "layer": "bronze"},
                   {"id": "silver:orders", "kind": "step", "name": "orders", "layer": "silver"},
                   {"id": "silver.orders", "kind": "table", "name": "silver.orders", "layer": "silver"},
                   {"id": "export:orders", "kind": "export", "name": "out/orders.parquet", "layer": "serve"}],
         "edges": [{"source": "files:in/*.csv", "target": "ingest:orders"},
                   {"source": "ingest:orders", "target": "bronze.orders"},
                   {"source": "bronze.orders", "target": "silver:orders"},
                   {"source": "silver:orders", "target": "silver.orders"}]}
    out = graph.elements(g, focus="bronze.orders")
    assert [n["id"] for n in out["nodes"]] == ["files:in/*.csv", "bronze.orders", "silver.orders", "export:orders"]
    assert [(e["source"], e["target"], e["step"]) for e in out["edges"]] == [
        ("files:in/*.csv", "bronze.orders", "ingest:orders"), ("bronze.orders", "silver.orders", "silver:orders")]
    layers = {n["id"]: (n["layer"], n["table"], n.get("focus")) for n in out["nodes"]}
    assert layers["files:in/*.csv"] == ("source", None, None) and layers["export:orders"][0] == "serve"
    assert layers["bronze.orders"] == ("bronze", "bronze.orders", True)
