"""Bronze `files` sources on a real DuckLake: accounting of messy input, schema evolution, rescued data,
incremental state, landing copies, rollback, and an S3 glob with versioned buckets."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from airduck.bronze import ingest_source
from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.lake.connection import open_lake, storage_settings
from airduck.project import load_project
from airduck.storage import open_store, setup_store
from tests.support.seaweed import boto3_client

# --------------------------------------------------------------------------------------------------
# helpers (also used by the postgres and http tests)


@contextmanager
def bronze_run(root: Path, run_id: str, batch: int = 1, *, full_refresh: bool = False, reingest: bool = False,
               commit: bool = True) -> Iterator[RunContext]:
    """A RunContext on an open lake transaction, committed (or rolled back) at the end, like the runner does."""
    project = load_project(root)
    con = open_lake(project)
    try:
        landing = open_store(project.config.lake.landing, storage_settings(project), base_dir=project.root)
        con.execute("BEGIN TRANSACTION")
        ctx = RunContext(project, con, run_id, batch, landing, full_refresh, reingest=reingest)
        try:
            yield ctx
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT" if commit else "ROLLBACK")
    finally:
        con.close()


def ingest(root: Path, name: str, run_id: str, batch: int = 1, **kw: Any) -> StepResult:
    with bronze_run(root, run_id, batch, **kw) as ctx:
        return ingest_source(ctx, name, ctx.project.config.sources[name])


def query(root: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    con = open_lake(load_project(root))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def table_exists(root: Path, schema: str, name: str) -> bool:
    return bool(query(root, "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'lake' "
                            "AND table_schema = ? AND table_name = ?", [schema, name])[0][0])


def data_lines(data: bytes, header: bool = True) -> int:
    """Non-empty lines of a file (a CRLF counts once), minus the header."""
    lines = [ln for ln in data.replace(b"\r\n", b"\n").split(b"\n") if ln.strip()]
    return len(lines) - (1 if header else 0)


def files_project(factory, sources: dict[str, Any]) -> Path:
    root = factory.make({"sources": sources})
    (root / "data").mkdir(exist_ok=True)
    return root


# --------------------------------------------------------------------------------------------------
# malformed input is never dropped silently

MESSY_CSV = (
    b"id,name,amount\r\n"
    b"1,alice,10\r\n"
    b'2,"bob, jr",20\r\n'  # a delimiter inside quotes
    b"3,carol\r\n"  # too few fields
    b"\r\n"  # an empty line is not data
    b"4,dave,40,extra\r\n"  # too many fields
    b'5,"e ""quoted""",50\r\n'  # escaped quotes
    b"6,caf\xe9,60\r\n"  # a latin-1 byte in a UTF-8 file
    b"#7,hash,70\r\n"  # not a comment: data
    b"8,zed,80\r\n"
)


def test_messy_csv_every_line_is_in_bronze_or_rejects(local_projects) -> None:
    root = files_project(local_projects, {"orders": {"type": "files", "path": "data/*.csv"}})
    (root / "data" / "orders.csv").write_bytes(MESSY_CSV)

    result = ingest(root, "orders", "run-1")

    assert (result.rows_out, result.rows_rejected) == (5, 3)
    assert result.rows_in == data_lines(MESSY_CSV) == 8
    assert result.status == "warn"
    rejects = query(root, "SELECT _line_number, _raw, _reason, _source, _load_id FROM bronze.orders__rejects "
                          "ORDER BY _line_number")
    assert [(r[0], r[1]) for r in rejects] == [(4, "3,carol"), (6, "4,dave,40,extra"), (8, "6,caf\\xe9,60")]
    assert rejects[0][2] == "too few fields: line has 2 fields, expected 3"
    assert rejects[1][2] == "too many fields: line has 4 fields, expected 3"
    assert "INVALID ENCODING" in rejects[2][2]
    assert all(r[3] == "orders" and r[4] == "run-1" for r in rejects)


def test_a_ragged_csv_line_has_one_reason(local_projects) -> None:
    """DuckDB reports a line with 3 extra fields as 3 errors (Found: 4, 5, 6): the reason names one count."""
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.csv"}})
    (root / "data" / "t.csv").write_bytes(b"a,b,c\n1,x,1\n2,y,2,3,4,5\n3\n4,z,4\n")
    ingest(root, "t", "run-1")
    assert query(root, "SELECT _line_number, _reason FROM bronze.t__rejects ORDER BY 1") == [
        (3, "too many fields: line has 6 fields, expected 3"), (4, "too few fields: line has 1 field, expected 3")]


def test_messy_csv_rows_exact(local_projects) -> None:
    root = files_project(local_projects, {"orders": {"type": "files", "path": "data/*.csv"}})
    (root / "data" / "orders.csv").write_bytes(MESSY_CSV)
    ingest(root, "orders", "run-1")
    rows = query(root, "SELECT id, name, amount, _row_number, _rescued FROM bronze.orders ORDER BY _row_number")
    # '#7' is in the sample, so `id` stays text; `amount` is all integers.
    assert rows == [("1", "alice", 10, 1, None), ("2", "bob, jr", 20, 2, None), ("5", 'e "quoted"', 50, 3, None),
                    ("#7", "hash", 70, 4, None), ("8", "zed", 80, 5, None)]
    types = dict(query(root, "SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'bronze' AND table_name = 'orders'"))
    assert (types["id"], types["amount"], types["name"]) == ("VARCHAR", "BIGINT", "VARCHAR")
    assert types["_rescued"] == "VARCHAR" and types["_ingested_at"] == "TIMESTAMP WITH TIME ZONE"


def test_mixed_line_endings_and_quoting_errors_are_accounted(local_projects) -> None:
    """A CRLF file with LF lines appended (DuckDB's strict parser stops on it) and a junk-after-quote line."""
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.csv"}})
    data = b"a,b\r\n1,x\r\n2,y\r\n3,\"q\"junk\n4,z\n5,w,extra\n6,v\n"
    (root / "data" / "t.csv").write_bytes(data)
    result = ingest(root, "t", "run-1")
    assert result.rows_out + result.rows_rejected == data_lines(data) == 6
    assert sorted(r[0] for r in query(root, "SELECT a FROM bronze.t")) == [1, 2, 4, 6]
    rejects = query(root, "SELECT _line_number, _raw FROM bronze.t__rejects ORDER BY 1")
    assert rejects == [(4, '3,"q"junk'), (6, "5,w,extra")]


# --------------------------------------------------------------------------------------------------
# many CSV files in one run: one scan per header (files.csv_reader._CsvGroup), or file by file (streamed)

GROUP_FILES = {
    "a.csv": b"id,name\n1,ann\n2,bob,extra\n3,cy\n4,dee\n",  # line 3 is ragged
    "b.csv": b"id,name\n5,eve\n6,caf\xe9\n7,fay\n",  # line 3 is not UTF-8
    "c.csv": b"id,name,city\n8,gus,rome\n9,hal,oslo\n",  # a new column
    "d.csv": b"id,name\n",  # a header only
    "e.csv": b"id,name\n10,ivy\n11,jo\n",
}


def _group_snapshot(root: Path) -> dict[str, Any]:
    return {
        "rows": query(root, "SELECT regexp_extract(_source_file, '[a-e][.]csv'), id, name, city, _row_number, "
                            "_source_version, _landing_key FROM bronze.people ORDER BY id"),
        "rejects": query(root, "SELECT regexp_extract(_source_file, '[a-e][.]csv'), _line_number, _raw, "
                               "_landing_key FROM bronze.people__rejects ORDER BY 1, 2"),
        "files": query(root, "SELECT regexp_extract(path, '[a-e][.]csv'), rows, rejects, sha256, landing_key "
                             "FROM airduck.bronze_files ORDER BY 1"),
    }


@pytest.mark.parametrize("limits", [{}, {"STAGE_BYTES": 1}, {"STAGE_RUN_BYTES": 60}],
                         ids=["one-scan-per-header", "file-by-file", "run-budget-spent-after-the-first-file"])
def test_many_csv_files_keep_per_file_accounting_row_numbers_and_landing(local_projects, monkeypatch,
                                                                         limits) -> None:
    from airduck.bronze.files import ingest as files_ingest

    for name, value in limits.items():  # smaller groups, or a run that may stage only the first files
        monkeypatch.setattr(files_ingest, name, value)
    root = files_project(local_projects, {"people": {"type": "files", "path": "data/*.csv"}})
    for name, data in GROUP_FILES.items():
        (root / "data" / name).write_bytes(data)

    result = ingest(root, "people", "run-1")

    assert (result.rows_out, result.rows_rejected, result.files) == (9, 2, 5)
    assert result.details["new_columns"] == ["id", "name", "city"]
    snap = _group_snapshot(root)
    sha = {n: hashlib.sha256(d).hexdigest() for n, d in GROUP_FILES.items()}
    # the record number counts the records that loaded, per file and in file order
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in snap["rows"]] == [
        ("a.csv", 1, "ann", None, 1), ("a.csv", 3, "cy", None, 2), ("a.csv", 4, "dee", None, 3),
        ("b.csv", 5, "eve", None, 1), ("b.csv", 7, "fay", None, 2),
        ("c.csv", 8, "gus", "rome", 1), ("c.csv", 9, "hal", "oslo", 2),
        ("e.csv", 10, "ivy", None, 1), ("e.csv", 11, "jo", None, 2),
    ]
    assert all(r[5] == sha[r[0]] and r[6] == f"people/run-1/{r[0]}" for r in snap["rows"])
    assert snap["rejects"] == [("a.csv", 3, "2,bob,extra", "people/run-1/a.csv"),
                               ("b.csv", 3, "6,caf\\xe9", "people/run-1/b.csv")]
    assert snap["files"] == [
        ("a.csv", 3, 1, sha["a.csv"], "people/run-1/a.csv"), ("b.csv", 2, 1, sha["b.csv"], "people/run-1/b.csv"),
        ("c.csv", 2, 0, sha["c.csv"], "people/run-1/c.csv"), ("d.csv", 0, 0, sha["d.csv"], "people/run-1/d.csv"),
        ("e.csv", 2, 0, sha["e.csv"], "people/run-1/e.csv"),
    ]
    for name, data in GROUP_FILES.items():  # every line of every file is in bronze or in the rejects
        loaded = sum(1 for r in snap["rows"] if r[0] == name) + sum(1 for r in snap["rejects"] if r[0] == name)
        assert loaded == data_lines(data), name
    # nothing of the scans is left behind in the DuckDB instance
    assert not [d for d in query(root, "SELECT database_name FROM duckdb_databases()") if "stage" in d[0]]


def test_a_file_the_group_scan_cannot_read_is_read_on_its_own_and_the_others_still_load(local_projects) -> None:
    """Mixed line endings stop DuckDB's strict reader for the whole multi-file scan: the group falls back to
    reading file by file, which repairs that file, and every line is still accounted for."""
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.csv"}})
    good = b"a,b\n1,x\n2,y\n"
    mixed = b"a,b\r\n3,p\r\n4,q\n5,r,extra\n6,s\n"
    (root / "data" / "1.csv").write_bytes(good)
    (root / "data" / "2.csv").write_bytes(mixed)
    (root / "data" / "3.csv").write_bytes(good.replace(b"1,", b"7,").replace(b"2,", b"8,"))
    result = ingest(root, "t", "run-1")
    assert result.rows_out + result.rows_rejected == data_lines(good) * 2 + data_lines(mixed)
    assert sorted(r[0] for r in query(root, "SELECT a FROM bronze.t")) == [1, 2, 3, 4, 6, 7, 8]
    assert query(root, "SELECT _line_number, _raw FROM bronze.t__rejects") == [(4, "5,r,extra")]
    assert query(root, "SELECT regexp_extract(path, '[0-9][.]csv'), rows, rejects FROM airduck.bronze_files "
                       "ORDER BY 1") == [("1.csv", 2, 0), ("2.csv", 3, 1), ("3.csv", 2, 0)]
    # the group's plan added the columns before its scan failed: the step still reports them as new
    assert result.details["new_columns"] == ["a", "b"]


def test_a_quote_open_to_the_end_of_a_file_is_rejected_also_among_many_files(local_projects) -> None:
    """DuckDB 1.5.5's multi-file scan drops such a record (neither row nor reject) past 2 x threads files: the file
    is read on its own, where the record is rejected."""
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.csv"}})
    for i in range(1, 9):
        (root / "data" / f"g{i}.csv").write_bytes(f"id,name\n{i},x\n".encode())
    (root / "data" / "z.csv").write_bytes(b'id,name\n70,"unterminated\n80,gus\n')
    result = ingest(root, "t", "run-1")
    assert (result.rows_out, result.rows_rejected) == (8, 1)
    assert query(root, "SELECT _line_number, _raw FROM bronze.t__rejects") == [(2, '70,"unterminated\n80,gus')]
    assert query(root, "SELECT rows, rejects FROM airduck.bronze_files WHERE path LIKE '%z.csv'") == [(0, 1)]


def test_paths_that_share_a_landing_key_keep_their_own_copies(local_projects) -> None:
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.csv"}})
    a, b = b"id,name\n1,from_backslash\n", b"id,name\n3,from_underscore\n"
    (root / "data" / "a\\b.csv").write_bytes(a)  # `\` is not valid in a key: it becomes `_`
    (root / "data" / "a_b.csv").write_bytes(b)
    ingest(root, "t", "run-1")
    rows = query(root, "SELECT id, name, _landing_key FROM bronze.t ORDER BY id")
    assert [r[:2] for r in rows] == [(1, "from_backslash"), (3, "from_underscore")]
    project = load_project(root)
    landing = open_store(project.config.lake.landing, storage_settings(project), base_dir=root)
    assert {landing.get(r[2]) for r in rows} == {a, b}
    assert len({r[2] for r in rows}) == 2


def test_files_load_in_their_order_so_a_new_column_takes_the_type_of_its_first_file(local_projects) -> None:
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.csv"}})
    (root / "data" / "1.csv").write_bytes(b"a,b\n")  # a header only
    (root / "data" / "2.csv").write_bytes(b"a,b,c\n1,10,x\n")
    (root / "data" / "3.csv").write_bytes(b"a,b\n2,oops\n")
    ingest(root, "t", "run-1")
    types = dict(query(root, "SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'bronze' AND table_name = 't'"))
    assert types["b"] == "BIGINT"
    rows = query(root, "SELECT a, b, c, _rescued FROM bronze.t ORDER BY a")
    assert rows[0][:3] == (1, 10, "x")
    assert rows[1][:3] == (2, None, None) and json.loads(rows[1][3]) == {"b": "oops"}


def test_broken_ndjson_lines_are_rejected_with_their_text(local_projects) -> None:
    root = files_project(local_projects, {"events": {"type": "files", "path": "data/*.jsonl"}})
    data = (
        b'{"id": 1, "kind": "a"}\n'
        b'{"id": 2, "kind": "b", "meta": {"x": [1, 2]}}\n'
        b"\n"
        b'{"id": 3, "kind": \n'  # broken
        b'{"id": 4, "kind": "caf\xe9"}\r\n'  # invalid UTF-8
        b"   \n"
        b"[1, 2]\n"  # valid JSON, not an object
        b'{"id": 5, "kind": "with \\"quote\\", comma", "a.b": true}\n'
        b'{"id": 6}\x1f{"id": 7}\n'  # a raw control character: the whole line is rejected, nothing truncated
    )
    (root / "data" / "e.jsonl").write_bytes(data)
    result = ingest(root, "events", "run-1")
    assert (result.rows_out, result.rows_rejected) == (3, 4)
    assert result.rows_in == data_lines(data, header=False) == 7
    rows = query(root, 'SELECT id, kind, meta, "a.b", _row_number FROM bronze.events ORDER BY id')
    assert rows == [
        (1, "a", None, None, 1), (2, "b", '{"x":[1,2]}', None, 2), (5, 'with "quote", comma', None, True, 8),
    ]
    rejects = query(root, "SELECT _line_number, _raw, _reason FROM bronze.events__rejects ORDER BY 1")
    assert [(r[0], r[1]) for r in rejects] == [
        (4, '{"id": 3, "kind": '), (5, '{"id": 4, "kind": "caf\\xe9"}'), (7, "[1, 2]"),
        (9, '{"id": 6}\x1f{"id": 7}'),
    ]
    assert rejects[0][2] == "malformed JSON"
    assert "INVALID ENCODING" in rejects[1][2]
    assert rejects[2][2] == "not a JSON object (found an array)"
    assert rejects[3][2].startswith("malformed JSON: a raw control character")


def test_json_array_and_unreadable_files_do_not_stop_the_run(local_projects) -> None:
    root = files_project(local_projects, {
        "items": {"type": "files", "path": "data/*.json"},
        "facts": {"type": "files", "path": "data/*.parquet"},
    })
    (root / "data" / "a.json").write_text('[{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 5}, "oops"]')
    (root / "data" / "b.json").write_text('[{"sku": "C3", "qty": ')  # truncated array: whole file rejected
    duckdb.execute(f"COPY (SELECT range AS k, range * 2 AS v FROM range(5)) TO '{root / 'data' / 'good.parquet'}'")
    (root / "data" / "bad.parquet").write_bytes(b"PAR1 this is not parquet")

    with bronze_run(root, "run-1") as ctx:
        items = ingest_source(ctx, "items", ctx.project.config.sources["items"])
        facts = ingest_source(ctx, "facts", ctx.project.config.sources["facts"])

    assert (items.rows_out, items.rows_rejected, items.files) == (2, 2, 2)
    assert query(root, "SELECT sku, qty FROM bronze.items ORDER BY sku") == [("A1", 2), ("B2", 5)]
    item_rejects = query(root, "SELECT _source_file, _line_number, _raw, _reason FROM bronze.items__rejects ORDER BY 1")
    assert item_rejects[0][1:] == (3, '"oops"', "not a JSON object (found a string)")
    assert item_rejects[1][0].endswith("b.json") and item_rejects[1][1] is None
    assert item_rejects[1][3].startswith("cannot read the JSON array")

    assert (facts.rows_out, facts.rows_rejected) == (5, 1)
    assert query(root, "SELECT sum(v), max(_row_number) FROM bronze.facts") == [(20, 5)]
    (bad,) = query(root, "SELECT _source_file, _reason FROM bronze.facts__rejects")
    assert bad[0].endswith("bad.parquet") and bad[1].startswith("cannot read the Parquet file")
    assert str(root) not in bad[1].replace(bad[0], "")  # names the file, not a temp path


def test_metadata_name_collisions_are_renamed(local_projects) -> None:
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.csv"}})
    (root / "data" / "t.csv").write_text("id,_source,_ROW_NUMBER,src_source\n1,crm,7,x\n")
    ingest(root, "t", "run-1", 1)
    (root / "data" / "t2.csv").write_text("id,src_source,_source\n2,y,erp\n")  # same names, other order
    ingest(root, "t", "run-2", 2)
    assert query(root, "SELECT id, src__source, src__ROW_NUMBER, src_source, _source, _row_number FROM bronze.t "
                       "ORDER BY id") == [(1, "crm", 7, "x", "t", 1), (2, "erp", None, "y", "t", 1)]
    cols = [r[0] for r in query(root, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'bronze' "
                                      "AND table_name = 't' ORDER BY ordinal_position")]
    assert cols[:5] == ["id", "src__source", "src__ROW_NUMBER", "src_source", "_load_id"]


def test_tsv_without_header(local_projects) -> None:
    root = files_project(local_projects, {"t": {"type": "files", "path": "data/*.tsv", "header": False}})
    (root / "data" / "t.tsv").write_text("1\ta b\t2024-01-02\n2\tc\t2024-02-03\n")
    result = ingest(root, "t", "run-1")
    assert result.rows_out == 2
    assert query(root, "SELECT column0, column1, column2 FROM bronze.t ORDER BY 1") == [
        (1, "a b", __import__("datetime").date(2024, 1, 2)), (2, "c", __import__("datetime").date(2024, 2, 3))]


# --------------------------------------------------------------------------------------------------
# schema evolution and rescued data


def test_new_column_in_a_later_file_is_added_and_values_that_do_not_fit_are_rescued(local_projects) -> None:
    root = files_project(local_projects, {"people": {"type": "files", "path": "data/*.csv"}})
    (root / "data" / "1.csv").write_text("id,name,score\n1,ann,1.5\n2,bob,2.25\n")
    first = ingest(root, "people", "run-1", 1)
    assert first.details["new_columns"] == ["id", "name", "score"]

    (root / "data" / "2.csv").write_text("id,name,score,email\n3,cy,3,cy@x.org\nabc,dee,high,d@x.org\n1.5,eve,,e@x\n")
    second = ingest(root, "people", "run-2", 2)
    assert second.details["new_columns"] == ["email"]
    assert second.details["rescued_rows"] == 2
    assert second.details["files_skipped"] == 1

    rows = query(root, "SELECT id, name, score, email, _rescued, _batch FROM bronze.people ORDER BY _batch, _row_number")
    assert [r[:4] for r in rows] == [
        (1, "ann", 1.5, None), (2, "bob", 2.25, None),
        (3, "cy", 3.0, "cy@x.org"), (None, "dee", None, "d@x.org"), (None, "eve", None, "e@x"),
    ]
    assert [json.loads(r[4]) if r[4] else None for r in rows] == [
        None, None, None, {"id": "abc", "score": "high"}, {"id": "1.5"},
    ]
    types = dict(query(root, "SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'bronze' AND table_name = 'people'"))
    assert (types["id"], types["score"], types["email"]) == ("BIGINT", "DOUBLE", "VARCHAR")


def test_parquet_type_change_is_rescued_not_rounded(local_projects) -> None:
    root = files_project(local_projects, {"m": {"type": "files", "path": "data/*.parquet"}})
    duckdb.execute(f"COPY (SELECT 1::BIGINT AS n, 'a' AS s) TO '{root / 'data' / '1.parquet'}'")
    ingest(root, "m", "run-1", 1)
    duckdb.execute(f"COPY (SELECT * FROM (VALUES (2.0::DOUBLE, 'b'), (2.5::DOUBLE, 'c')) t(n, s)) TO '{root / 'data' / '2.parquet'}'")
    ingest(root, "m", "run-2", 2)
    rows = query(root, "SELECT n, s, _rescued FROM bronze.m ORDER BY s")
    assert rows == [(1, "a", None), (2, "b", None), (None, "c", '{"n":"2.5"}')]


# --------------------------------------------------------------------------------------------------
# incremental state, landing, full refresh, rollback


def test_same_file_twice_adds_nothing_changed_file_is_a_new_version_reingest_replaces(local_projects) -> None:
    root = files_project(local_projects, {"s": {"type": "files", "path": "data/*.csv"}})
    f = root / "data" / "s.csv"
    f.write_text("k,v\n1,a\n2,b\n")
    assert ingest(root, "s", "run-1", 1).rows_out == 2

    again = ingest(root, "s", "run-2", 2)
    assert (again.rows_out, again.files, again.status, again.details["files_skipped"]) == (0, 0, "skipped", 1)
    assert query(root, "SELECT count(*) FROM bronze.s") == [(2,)]

    f.touch()  # same bytes, new mtime: hashed, still the same version
    assert ingest(root, "s", "run-3", 3).rows_out == 0

    f.write_text("k,v\n1,a\n2,B\n3,c\n")
    changed = ingest(root, "s", "run-4", 4)
    assert changed.rows_out == 3
    versions = query(root, "SELECT load_id, sha256, rows FROM airduck.bronze_files WHERE source = 's' ORDER BY batch")
    assert [(v[0], v[2]) for v in versions] == [("run-1", 2), ("run-4", 3)]
    assert versions[1][1] == hashlib.sha256(f.read_bytes()).hexdigest() != versions[0][1]
    assert query(root, "SELECT DISTINCT _source_version FROM bronze.s WHERE _load_id = 'run-4'") == [(versions[1][1],)]

    assert ingest(root, "s", "run-5", 5, full_refresh=True).rows_out == 0  # a full refresh does not re-read

    refreshed = ingest(root, "s", "run-6", 6, reingest=True)  # a reingest replaces every version of the source
    assert refreshed.rows_out == 3
    assert query(root, "SELECT _load_id, count(*) FROM bronze.s GROUP BY 1 ORDER BY 1") == [("run-6", 3)]
    assert query(root, "SELECT load_id, rows FROM airduck.bronze_files WHERE source = 's'") == [("run-6", 3)]


def test_landing_copy_has_identical_bytes_and_rows_point_to_it(local_projects) -> None:
    root = files_project(local_projects, {"raw": {"type": "files", "path": "data/**/*.csv"}})
    (root / "data" / "2024").mkdir()
    payload = b"a,b\r\n1,\xff\r\n2,ok\r\n"
    (root / "data" / "2024" / "x.csv").write_bytes(payload)
    ingest(root, "raw", "run-7")
    keys = query(root, "SELECT DISTINCT _landing_key FROM bronze.raw UNION SELECT _landing_key FROM bronze.raw__rejects")
    assert keys == [("raw/run-7/2024/x.csv",)]
    project = load_project(root)
    landing = open_store(project.config.lake.landing, storage_settings(project), base_dir=root)
    assert landing.get("raw/run-7/2024/x.csv") == payload
    (state,) = query(root, "SELECT path, size, sha256, landing_key, rows, rejects FROM airduck.bronze_files")
    assert state == ("data/2024/x.csv", len(payload),  # relative to the project: it may be copied or moved
                     hashlib.sha256(payload).hexdigest(), "raw/run-7/2024/x.csv", 1, 1)


def test_rolled_back_run_leaves_nothing_and_the_next_run_loads_the_file(local_projects) -> None:
    root = files_project(local_projects, {"r": {"type": "files", "path": "data/*.ndjson"}})
    (root / "data" / "r.ndjson").write_text('{"a": 1}\n{"a": 2}\nnot json\n')
    before = query(root, "SELECT id FROM lake.current_snapshot()")
    with bronze_run(root, "run-1", commit=False) as ctx:
        result = ingest_source(ctx, "r", ctx.project.config.sources["r"])
        assert (result.rows_out, result.rows_rejected) == (2, 1)
    assert query(root, "SELECT id FROM lake.current_snapshot()") == before
    assert not table_exists(root, "bronze", "r")
    assert not table_exists(root, "airduck", "bronze_files")

    # a later step fails: the runner rolls back
    with pytest.raises(RuntimeError), bronze_run(root, "run-2") as ctx:
        ingest_source(ctx, "r", ctx.project.config.sources["r"])
        raise RuntimeError("silver failed")
    assert not table_exists(root, "bronze", "r")

    again = ingest(root, "r", "run-3")
    assert (again.rows_out, again.rows_rejected) == (2, 1)
    assert query(root, "SELECT a, _load_id FROM bronze.r ORDER BY a") == [(1, "run-3"), (2, "run-3")]
    assert query(root, "SELECT load_id FROM airduck.bronze_files") == [("run-3",)]


def test_a_path_that_matches_nothing_fails_the_first_run_unless_allow_empty(local_projects) -> None:
    from airduck.errors import SourceError

    root = files_project(local_projects, {
        "typo": {"type": "files", "path": "data/ordrs/*.csv"},
        "none": {"type": "files", "path": "data/*.csv", "allow_empty": True},
        "later": {"type": "files", "path": "data/later/*.csv"},
    })
    # first run, nothing ever ingested: an error that names the path and the fix
    with pytest.raises(SourceError, match=r"sources\.typo\.path: no file matches 'data/ordrs/\*\.csv'") as info:
        ingest(root, "typo", "run-1")
    assert str(root / "data" / "ordrs") in str(info.value) and "allow_empty: true" in info.value.hint
    assert not table_exists(root, "bronze", "typo")
    # allow_empty: fine, and the contract table exists
    result = ingest(root, "none", "run-1")
    assert result.status == "skipped" and "warning" not in result.details
    cols = [r[0] for r in query(root, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'bronze' "
                                      "AND table_name = 'none' ORDER BY ordinal_position")]
    assert cols == ["_load_id", "_batch", "_source", "_source_file", "_source_version", "_landing_key",
                    "_row_number", "_ingested_at", "_rescued"]
    # after a first ingest: no new file is fine, a path that matches nothing any more is a warning
    (root / "data" / "later").mkdir()
    (root / "data" / "later" / "a.csv").write_text("a\n1\n")
    assert ingest(root, "later", "run-2", batch=2).status == "ok"
    assert ingest(root, "later", "run-3", batch=3).status == "skipped"
    (root / "data" / "later" / "a.csv").unlink()
    gone = ingest(root, "later", "run-4", batch=4)
    assert gone.status == "warn" and "no files match" in gone.details["warning"]


def test_reserved_reader_option_is_a_config_error(local_projects) -> None:
    from airduck.errors import ConfigError

    root = files_project(local_projects, {"o": {"type": "files", "path": "data/*.csv", "options": {"all_varchar": False}}})
    (root / "data" / "o.csv").write_text("a\n1\n")
    with pytest.raises(ConfigError, match=r"sources\.o\.options\.all_varchar"):
        ingest(root, "o", "run-1")


# --------------------------------------------------------------------------------------------------
# S3 source and S3 landing on versioned buckets (PostgreSQL catalog)


def test_s3_glob_source_with_versioned_landing_records_version_ids(pg_s3_projects, s3_server) -> None:
    bucket = "bronze-" + uuid.uuid4().hex[:10]
    settings = None
    client = boto3_client(s3_server)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    body = b"id,city\n1,Oslo\n2,Rome\n3\n"
    put = client.put_object(Bucket=bucket, Key="src/2024/a.csv", Body=body)
    client.put_object(Bucket=bucket, Key="src/2024/ignored.txt", Body=b"x")
    root = pg_s3_projects.make({
        "lake": {"landing": f"s3://{bucket}/landing/"},
        "sources": {"cities": {"type": "files", "path": f"s3://{bucket}/src/*/*.csv"}},
    })
    project = load_project(root)
    settings = storage_settings(project)
    landing = open_store(project.config.lake.landing, settings)
    assert any(s.status in ("ok", "created") and s.action == "enable versioning"
               for s in setup_store(landing, versioning=True, noncurrent_days=None))

    first = ingest(root, "cities", "run-1", 1)
    assert (first.rows_out, first.rows_rejected, first.files) == (2, 1, 1)
    rows = query(root, "SELECT id, city, _source_file, _source_version, _landing_key FROM bronze.cities ORDER BY id")
    assert [r[:2] for r in rows] == [(1, "Oslo"), (2, "Rome")]
    assert rows[0][2] == f"s3://{bucket}/src/2024/a.csv"
    assert rows[0][3] == put["VersionId"]  # the source object's version
    assert rows[0][4] == "cities/run-1/2024/a.csv"
    (state,) = query(root, "SELECT version_id, landing_key, landing_version_id, sha256 FROM airduck.bronze_files")
    versions = client.list_object_versions(Bucket=bucket, Prefix="landing/cities/run-1/2024/a.csv")["Versions"]
    assert state[0] == put["VersionId"] and state[2] == versions[0]["VersionId"] and state[2] not in (None, "null")
    assert landing.get("cities/run-1/2024/a.csv", state[2]) == body
    assert state[3] == hashlib.sha256(body).hexdigest()
    assert query(root, "SELECT _line_number, _raw FROM bronze.cities__rejects") == [(4, "3")]

    assert ingest(root, "cities", "run-2", 2).rows_out == 0  # unchanged etag: not even downloaded

    put2 = client.put_object(Bucket=bucket, Key="src/2024/a.csv", Body=body.replace(b"3\n", b"3,Lima\n"))
    third = ingest(root, "cities", "run-3", 3)
    assert (third.rows_out, third.rows_rejected) == (3, 0)
    assert query(root, "SELECT DISTINCT _source_version FROM bronze.cities WHERE _load_id = 'run-3'") == [
        (put2["VersionId"],)]
