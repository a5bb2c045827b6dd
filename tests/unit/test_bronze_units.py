"""Unit tests of the bronze building blocks: globs, names, type inference (real DuckDB), HTTP retry timing."""

from __future__ import annotations

import duckdb
import httpx
import pytest

from airduck.bronze.config import HttpSource
from airduck.bronze.files import glob_regex, landing_key, split_glob
from airduck.bronze.http import Fetcher, SourceUnreachable, dig, parse_page
from airduck.bronze.records import json_path
from airduck.bronze.table import StagedColumn, dedupe_names, infer_types, lake_type, safe_name


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("*.csv", ["a.csv", "b c.csv"], ["sub/a.csv", "a.csv.gz", "a.json"]),
        ("**/*.csv", ["a.csv", "x/a.csv", "x/y/a.csv"], ["a.json", "x/a.json"]),
        ("2024-??/[ab]*.json", ["2024-01/a.json", "2024-12/bz.json"], ["2024-1/a.json", "2024-01/c.json"]),
        ("[!x]*.csv", ["a.csv"], ["x.csv"]),
    ],
)
def test_glob_regex(pattern: str, yes: list[str], no: list[str]) -> None:
    rx = glob_regex(pattern)
    assert all(rx.match(p) for p in yes), [p for p in yes if not rx.match(p)]
    assert not any(rx.match(p) for p in no), [p for p in no if rx.match(p)]


def test_split_glob() -> None:
    assert split_glob("data/in/*.csv") == ("data/in", "*.csv")
    assert split_glob("/abs/x/**/y.json") == ("/abs/x", "**/y.json")
    assert split_glob("data/file.csv") == ("data", "file.csv")
    assert split_glob("pre/2024-*/a.csv") == ("pre", "2024-*/a.csv")


def test_landing_key_is_always_a_valid_key() -> None:
    assert landing_key("src", "run-1", "2024/a b.csv") == "src/run-1/2024/a b.csv"
    assert landing_key("src", "run-1", "weird\\name.csv") == "src/run-1/weird_name.csv"


def test_column_names() -> None:
    assert dedupe_names(["id", "", "ID", "name", "id"]) == ["id", "column1", "ID_2", "name", "id_3"]
    assert safe_name("_load_id", set()) == "src__load_id"
    assert safe_name("_rescued", {"src__rescued"}) == "src__rescued_2"
    assert safe_name("amount", {"amount"}) == "amount_2"
    assert safe_name("_private", set()) == "_private"  # only metadata names are renamed


def test_lake_type_maps_what_ducklake_cannot_store() -> None:
    assert lake_type("ENUM('a', 'b')") == "VARCHAR"
    assert lake_type("STRUCT(s ENUM('x'), n INTEGER)") == "VARCHAR"
    assert lake_type("INTEGER[3]") == "INTEGER[]"
    assert lake_type("DECIMAL(12,2)") == "DECIMAL(12,2)"
    assert lake_type("TIMESTAMP WITH TIME ZONE") == "TIMESTAMP WITH TIME ZONE"


def test_infer_types_on_real_duckdb() -> None:
    con = duckdb.connect()
    rel = (
        "SELECT * FROM (VALUES "
        "('1', 'true', '1.5', '2024-01-02', '2024-01-02 03:04:05', '2024-01-02T03:04:05Z', '007', 'x', NULL), "
        "('-2', 'FALSE', '2', '2024-12-31', '2024-12-31T23:59:59.123', '2024-01-02 03:04:05+02:00', '12', '1', NULL), "
        "(' 3 ', NULL, '1e3', NULL, NULL, NULL, NULL, '', NULL)"
        ") AS t(i, b, d, dt, ts, tz, zip, mixed, empty)"
    )
    cols = [StagedColumn(c, c) for c in ("i", "b", "d", "dt", "ts", "tz", "zip", "mixed", "empty")]
    assert infer_types(con, rel, None, cols) == {
        "i": "BIGINT", "b": "BOOLEAN", "d": "DOUBLE", "dt": "DATE", "ts": "TIMESTAMP", "tz": "TIMESTAMPTZ",
        "zip": "VARCHAR",  # a leading zero is kept as text
        "mixed": "VARCHAR", "empty": "VARCHAR",
    }
    big = "SELECT * FROM (VALUES ('99999999999999999999'), ('1')) AS t(n)"
    assert infer_types(con, big, None, [StagedColumn("n", "n")]) == {"n": "VARCHAR"}  # too big for BIGINT: exact text


def test_infer_types_looks_past_the_first_records() -> None:
    """The first pass rules candidates out on the first records only: what comes later still counts."""
    con = duckdb.connect()
    rel = ("SELECT CASE WHEN i < 3000 THEN NULL ELSE CAST(i AS VARCHAR) END AS late, "
           "CASE WHEN i = 2500 THEN 'n/a' ELSE CAST(i AS VARCHAR) END AS spoilt, "
           "CAST(i AS VARCHAR) AS num, CASE WHEN i = 60000 THEN 'x' ELSE '1.5' END AS beyond "
           "FROM range(70000) t(i)")
    cols = [StagedColumn(c, c) for c in ("late", "spoilt", "num", "beyond")]
    assert infer_types(con, rel, None, cols) == {
        "late": "BIGINT", "spoilt": "VARCHAR", "num": "BIGINT",
        "beyond": "DOUBLE",  # past the 50,000-record sample
    }


def test_json_path_reaches_any_key() -> None:
    keys = ["$ref", 'q"k', "back\\slash", "a.b", "ünï", "/x"]
    doc = {k: i for i, k in enumerate(keys)}
    import json

    got = duckdb.execute("SELECT json_extract_string(?::JSON, ?)", [json.dumps(doc), [json_path(k) for k in keys]]).fetchone()[0]
    assert got == [str(i) for i in range(len(keys))]


def test_parse_page_and_dig() -> None:
    assert parse_page(b'{"a": {"b": [1, 2, 3]}}', "a.b")[1:] == (3, None)
    assert parse_page(b'{"a": {}}', "a.b")[1:] == (0, None)
    assert parse_page(b'{"x": 1}', None)[1:] == (1, None)
    assert parse_page(b"[]", None)[1:] == (0, None)
    assert parse_page(b"[NaN]", None)[1] == -1
    assert parse_page(b"\xff", None)[1] == -1
    assert dig({"a": [{"b": 5}]}, "a.0.b") == 5


def _fetcher(handler, **cfg) -> tuple[Fetcher, list[float]]:
    slept: list[float] = []
    source = HttpSource.model_validate({"type": "http", "url": "http://127.0.0.1:9/items", **cfg})
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Fetcher("api", source, client, sleep=slept.append), slept


def test_retry_delays_honour_small_retry_after_and_back_off_exponentially() -> None:
    answers = iter([
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "3600"}),  # too long: exponential backoff instead
        httpx.Response(200, json=[{"id": 1}]),
    ])
    fetcher, slept = _fetcher(lambda request: next(answers), backoff=0.5, retries=5)
    out = fetcher.fetch()
    assert slept == [2.0, 1.0, 2.0]
    assert (out.requests, out.retries, len(out.pages), out.pages[0].records) == (4, 3, 1, 1)


def test_timeouts_are_retried_then_reported_as_transient() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    fetcher, slept = _fetcher(handler, backoff=0.1, retries=2, headers={"Authorization": "Bearer zzz-secret"})
    with pytest.raises(SourceUnreachable, match=r"failed after 3 attempt.*timed out") as info:
        fetcher.fetch()
    assert len(calls) == 3 and slept == [0.1, 0.2]
    assert "zzz-secret" not in str(info.value)


_TRICKY = ["1", " 1 ", "+5", "-7", "007", "1.5", " 1.5", "1e3", "0x1F", "1_000", "1,000", "5.", ".5", "inf", "NaN",
           "\t7", "7\n", " ", "", "  x ", "true", " FALSE ", "t", "2024-01-02", " 2024-01-02 ", "2024-01-02 03:04:05",
           " 2024-01-02T03:04:05Z ", "2024-01-02 03:04:05+02:00", "03:04:05", " 03:04:05 ", "99999999999999999999",
           "00000000-0000-0000-0000-000000000001", " 00000000-0000-0000-0000-000000000001 ", "1 day", None]


@pytest.mark.parametrize("target", ["BIGINT", "INTEGER", "SMALLINT", "UBIGINT", "BOOLEAN", "DOUBLE", "DECIMAL(12,2)",
                                    "DATE", "TIMESTAMP", "TIMESTAMPTZ", "TIME", "UUID", "INTERVAL"])
def test_typed_values_parse_text_strictly(target: str) -> None:
    """The bronze casts (untrimmed first, for speed) give exactly the strict rule: the value with its spaces
    trimmed casts (integers: plain digits only), else it is NULL and its text is rescued (blank is just NULL)."""
    from airduck.bronze.table import ColumnPlan, typed_sql

    con = duckdb.connect()
    con.execute("CREATE TABLE t (n INTEGER, c0 VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(_TRICKY)))
    plan = [ColumnPlan(StagedColumn("c0", "col"), "col", target)]
    got = con.execute(f"SELECT n, CAST(__v0 AS VARCHAR), __rescued FROM ({typed_sql(plan, 'SELECT * FROM t')}) "
                      "ORDER BY n").fetchall()
    is_int = target in ("BIGINT", "INTEGER", "SMALLINT", "UBIGINT")
    strict = (f"CASE WHEN regexp_full_match(tr, '[+-]?[0-9]+') THEN TRY_CAST(tr AS {target}) END" if is_int
              else f"TRY_CAST(tr AS {target})")
    want = con.execute(
        f"SELECT n, CAST(x AS VARCHAR), CASE WHEN tr IS NOT NULL AND x IS NULL THEN to_json(map {{'col': c0}})::VARCHAR END "
        f"FROM (SELECT *, {strict} AS x FROM (SELECT *, nullif(trim(c0), '') AS tr FROM t)) ORDER BY n").fetchall()
    assert got == want
    assert any(r[1] is not None for r in got) and any(r[2] is not None for r in got)  # both kinds are exercised


def test_files_are_landed_ahead_in_order_and_errors_surface_in_turn() -> None:
    """Landing runs on two threads ahead of the reader, yet files come out in their order, no more than two
    are started before they are used, and a failure surfaces when its file's turn comes."""
    import threading
    import time

    from airduck.bronze.files.landing import _ahead

    started: list[int] = []
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=10)  # files 0 and 1 must be landed at the same time

    def land(i: int) -> int:
        with lock:
            started.append(i)
        if i < 2:
            both.wait()
        time.sleep(0.02 * (5 - i % 5))  # later files finish first
        if i == 6:
            raise ValueError("file 6 is broken")
        return i * 10

    gen = _ahead(land, list(range(10)), 2)
    got = []
    with pytest.raises(ValueError, match="file 6"):
        for x in gen:
            got.append(x)
            with lock:
                assert len(started) <= len(got) + 2  # bounded look-ahead
    assert got == [0, 10, 20, 30, 40, 50]
    assert max(started) <= 8  # never ran far past the failure
