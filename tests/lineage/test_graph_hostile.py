"""The graph against hostile input: names needing escaping in Mermaid, tricky silver expressions, unknown tables."""

from __future__ import annotations

from airduck.lineage.columns import expression_columns
from airduck.lineage.graph import LineageGraph
from tests.integration.test_pipeline_runs import orders_config

SOURCE = 'files:da"ta/my-or#ders;x/<a>*.csv'


def _graph() -> LineageGraph:
    return LineageGraph(
        {SOURCE: {"id": SOURCE, "kind": "source", "name": SOURCE, "label": SOURCE},
         "ingest:my-orders": {"id": "ingest:my-orders", "kind": "step", "name": "my-orders", "label": "ingest:my-orders"}},
        [{"source": SOURCE, "target": "ingest:my-orders"}])


def test_mermaid_labels_escape_hash_quotes_and_markup():
    text = _graph().to_mermaid()
    label = text.splitlines()[1]
    assert label == '  n0[("files:da#quot;ta/my-or#35;ders;x/#lt;a#gt;*.csv")]', label
    # no raw quote, `<`/`>` or an entity Mermaid would decode other than the ones written on purpose
    inner = label.split('"')[1]
    assert '"' not in inner and "<" not in inner and ">" not in inner and "#ders;" not in inner


def test_dot_ids_and_labels_are_quoted_and_escaped():
    text = _graph().to_dot()
    assert '"files:da\\"ta/my-or#ders;x/<a>*.csv" -> "ingest:my-orders";' in text


def test_expression_columns_in_written_order_without_subquery_columns():
    assert expression_columns("CASE WHEN status = 'x' THEN a ELSE b END") == ["status", "a", "b"]
    assert expression_columns("coalesce(b, a)") == ["b", "a"]
    # `v` is a column of `other`, not of this row; only `w` is
    assert expression_columns("(SELECT max(v) FROM other) + w") == ["w"]
    # a lambda's parameter is not a column; `k` is
    assert expression_columns("list_transform(items, x -> x * k)") == ["items", "k"]
    # struct access: the root column
    assert expression_columns('payload.amount::DOUBLE + "Order Id"') == ["payload", "Order Id"]


def test_an_unknown_table_is_one_clear_line(local_projects, capsys):
    from airduck.cli.app import main

    root = local_projects.make(orders_config())
    capsys.readouterr()
    try:
        main(["-p", str(root), "lineage", "nosuch.table"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    got = capsys.readouterr()
    out = (got.out + got.err).strip()
    assert code == 1, out
    assert "nosuch.table" in out and "Traceback" not in out, out
    assert len([ln for ln in out.splitlines() if ln.strip()]) == 1, out


def test_a_dbt_column_renamed_through_a_cte_after_a_transformation_is_not_identity():
    from airduck.lineage.dbt import model_columns

    sql = ('with a as (select upper(name) as n, id, name from "lake"."silver"."s") '
           "select n, id, name as m, n || id as k from a")
    got = {c.column: [(s.table, s.column, s.subtype) for s in c.sources] for c in model_columns("gold.x", sql)}
    assert got == {"n": [("silver.s", "name", "TRANSFORMATION")], "id": [("silver.s", "id", "IDENTITY")],
                   "m": [("silver.s", "name", "IDENTITY")],
                   "k": [("silver.s", "id", "TRANSFORMATION"), ("silver.s", "name", "TRANSFORMATION")]}


def test_table_names_resolve_case_insensitively_and_quoted():
    g = LineageGraph({i: {"id": i, "kind": "table", "name": i, "label": i} for i in ("silver.orders", "bronze.orders")})
    assert g.resolve("SILVER.Orders") == "silver.orders"
    assert g.resolve('"silver"."orders"') == "silver.orders"
    assert g.resolve("ORDERS") == "silver.orders"


def test_a_files_source_url_with_a_password_or_signature_is_shown_without_them(local_projects):
    import json

    from airduck.lakehouse import Lakehouse

    root = local_projects.make({"sources": {"items": {
        "type": "files", "path": "https://user:pw-secret-1234@127.0.0.1:9/x.csv?sig=sig-secret-5678"}}})
    with Lakehouse.open(root) as lh:
        g = lh.lineage(columns=True)
    out = json.dumps(g.to_dict()) + g.to_mermaid(True) + g.to_dot(True)
    assert "files:https://127.0.0.1:9/x.csv" in g.nodes, list(g.nodes)
    assert "pw-secret-1234" not in out and "sig-secret-5678" not in out, out
    assert g.resolve("files:https://127.0.0.1:9/x.csv") == "files:https://127.0.0.1:9/x.csv"
