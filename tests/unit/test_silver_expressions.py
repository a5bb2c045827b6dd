"""User SQL in silver rules: what is accepted, what is refused (injection attempts), and types."""

from __future__ import annotations

import duckdb
import pytest

from airduck.errors import RuleError
from airduck.silver.expressions import Sandbox, parse_expression, parse_type


@pytest.fixture
def sandbox():
    with Sandbox() as sb:
        yield sb


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("amount BETWEEN 0 AND 10000000", {"amount"}),
        ("coalesce(city, '') <> '' AND len(city) < 100", {"city"}),
        ("regexp_matches(email, '^[^@]+@[^@]+$')", {"email"}),
        ("address.city IS NOT NULL", {"address"}),
        ("list_filter(tags, lambda t: t <> '') IS NOT NULL", {"tags"}),
        ("TRY_CAST(price AS DOUBLE) * qty", {"price", "qty"}),
        ("CASE WHEN kind = 'a' THEN 1 ELSE 2 END", {"kind"}),
        ("amount > 0 -- a trailing comment", {"amount"}),
    ],
)
def test_valid_expressions_are_accepted_with_their_columns(sandbox, text, columns):
    parsed = parse_expression(text, "silver.t.expectations.0.check", sandbox)
    assert parsed.columns == columns
    assert parsed.text == text.strip()


def test_embedded_expression_keeps_duckdb_semantics_and_survives_comments(sandbox):
    """`~` is a full regex match in DuckDB: the text runs as written, and a `--` comment cannot eat the SQL after it."""
    parsed = parse_expression("code ~ '[A-Z]+' -- upper only", "w", sandbox)
    con = duckdb.connect()
    rows = con.execute(f"SELECT code, {parsed.sql} AS ok FROM (VALUES ('ABC'), ('ABc')) t(code) ORDER BY code").fetchall()
    assert rows == [("ABC", True), ("ABc", False)]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1; DROP TABLE x", "statements"),
        ("amount > 0; DELETE FROM lake.silver.orders", "statements"),
        ("DROP TABLE lake.silver.orders", "statement"),
        ("ATTACH 'evil.db'", "statement"),
        ("COPY lake.silver.orders TO '/tmp/x.csv'", "statement"),
        ("(SELECT 1)", "subquery"),
        ("amount > (SELECT max(amount) FROM lake.silver.orders)", "subquery"),
        ("EXISTS (SELECT 1 FROM lake.bronze.orders)", "subquery"),
        ("id IN (SELECT id FROM lake.silver.orders)", "subquery"),
        ("read_csv('/etc/passwd') IS NULL", "not allowed"),
        ("read_text('/etc/passwd') IS NOT NULL", "not allowed"),
        ("read_parquet('s3://bucket/x.parquet') IS NULL", "not allowed"),
        ("getenv('AWS_SECRET_ACCESS_KEY') = 'x'", "not allowed"),
        ("current_setting('s3_secret_access_key') = ''", "not allowed"),
        ("query('SELECT 1') IS NULL", "not allowed"),
        ("glob('/etc/*') IS NULL", "not allowed"),
        ("unnest(tags) = 'a'", "not allowed"),
        ("count(*) > 0", "aggregate"),
        ("sum(amount) OVER () > 0", "aggregate or window"),
        ("amount > $1", "parameter"),
        ("amount > ?", "parameter"),
        ("__ad_row IS NULL", "reserved"),
        ("amount > 0 AS ok", "alias"),
        ("amount >", "not a valid"),
        ("", "empty"),
        ("amount > 0) OR (1 = 1", "not a valid"),
    ],
)
def test_unsafe_or_invalid_expressions_are_refused(sandbox, text, needle):
    with pytest.raises(RuleError) as info:
        parse_expression(text, "silver.orders.expectations.0.check", sandbox)
    message = str(info.value)
    assert message.startswith("silver.orders.expectations.0.check: ")
    assert needle in message


def test_duckdb_layer_refuses_what_sqlglot_might_let_through(sandbox):
    from airduck.silver.expressions import UserExpression

    with pytest.raises(RuleError, match="subquery"):
        sandbox.check_expression(UserExpression("(SELECT 42)"), "w")
    with pytest.raises(RuleError, match="not allowed"):
        sandbox.check_expression(UserExpression("read_blob('/etc/hosts') IS NULL"), "w")
    with pytest.raises(RuleError, match="not a single expression"):
        sandbox.check_expression(UserExpression("1), (2"), "w")  # breaking out of the parentheses
    with pytest.raises(RuleError, match="not a valid DuckDB expression"):
        sandbox.check_expression(UserExpression("1) FROM lake.silver.orders --"), "w")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("BIGINT", "BIGINT"),
        ("int", "INTEGER"),
        ("decimal(12,2)", "DECIMAL(12,2)"),
        ("timestamptz", "TIMESTAMP WITH TIME ZONE"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE"),
        ("date", "DATE"),
        ("text", "VARCHAR"),
        ("VARCHAR[]", "VARCHAR[]"),
        ("JSON", "JSON"),
        ("STRUCT(a INT, b VARCHAR)", "STRUCT(a INTEGER, b VARCHAR)"),
    ],
)
def test_types_are_named_as_duckdb_names_them(sandbox, text, canonical):
    assert parse_type(text, "silver.t.columns.c.type", sandbox) == canonical


@pytest.mark.parametrize("text", ["INT); DROP TABLE x; --", "BIGNIT", "", "INT, b INT", "read_csv('x')", "VARCHAR AS x"])
def test_bad_types_are_refused(sandbox, text):
    with pytest.raises(RuleError, match=r"^silver\.t\.columns\.c\.type: "):
        parse_type(text, "silver.t.columns.c.type", sandbox)


def test_bad_strptime_format_is_refused_in_the_sandbox(sandbox):
    sandbox.check_format("%d/%m/%Y", "w")
    with pytest.raises(RuleError, match="not a strptime format"):
        sandbox.check_format("%d/%Q", "silver.t.columns.c.formats.0")


def test_bind_names_unknown_columns_and_returns_the_type(sandbox):
    parsed = parse_expression("amount * 2", "w", sandbox)
    assert sandbox.bind(parsed, [("amount", "DECIMAL(12,2)")], "w", "the row") == "DECIMAL(18,2)"
    with pytest.raises(RuleError, match="available columns: price"):
        sandbox.bind(parsed, [("price", "DOUBLE")], "silver.t.columns.x.expr", "bronze.t")
