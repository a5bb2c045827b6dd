"""Changing history safely: rollback (as a new snapshot) and tags (named snapshots kept from expiry)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import duckdb

from airduck.errors import NotFound, SqlError
from airduck.lake.catalog import TableRef, columns, current_snapshot, require_table, snapshots, table_exists
from airduck.lake.commit import write
from airduck.lake.connection import LAKE, quote_ident
from airduck.text import is_id

TAGS = f"{LAKE}.airduck.tags"


@dataclass
class Tag:
    name: str
    snapshot_id: int
    created_at: datetime
    created_by: str | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


def _snapshot_exists(con: duckdb.DuckDBPyConnection, version: int) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM {LAKE}.snapshots() WHERE snapshot_id = ?", [version]).fetchone()[0])


def rollback(con: duckdb.DuckDBPyConnection, table: TableRef, version: int, *, also: Sequence[TableRef] = (),
             then: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> int:
    """Make `table` hold what it held at snapshot `version`, as a new snapshot. Returns the new snapshot id.

    `also`: tables rolled back with it in the same snapshot (its quarantine or rejects); `then` runs in the same
    transaction after them (the caller brings the pipeline's state in line, see airduck.pipeline.rollback)."""
    require_table(con, table)
    if not _snapshot_exists(con, version):
        raise NotFound(f"snapshot {version} does not exist (or has expired)", hint=f"see `airduck snapshots {table}`")
    try:
        old_cols = con.execute(f"DESCRIBE SELECT * FROM {table.sql} AT (VERSION => ?)", [version]).fetchall()
    except duckdb.Error as exc:
        raise NotFound(f"table {table} did not exist at snapshot {version}: {str(exc).splitlines()[0]}") from None
    companions = [(t, _existed(con, t, version)) for t in also if table_exists(con, t)]
    with write(con, f"rollback {table} to snapshot {version}", step="rollback", table=table.qualified, to_version=version):
        _restore(con, table, version, old_cols)
        for companion, old in companions:
            if old is None:  # created after `version`: it held nothing then
                con.execute(f"DELETE FROM {companion.sql}")
            else:
                _restore(con, companion, version, old)
        if then is not None:
            then(con)
    return current_snapshot(con)


def _existed(con: duckdb.DuckDBPyConnection, table: TableRef, version: int) -> list[tuple] | None:
    """The columns `table` had at `version` (DESCRIBE rows), or None if it did not exist then (asked of the catalog's
    metadata first: a failed statement would abort an open transaction)."""
    if not _ids_at(con, table, version):
        return None
    return con.execute(f"DESCRIBE SELECT * FROM {table.sql} AT (VERSION => ?)", [version]).fetchall()


def _restore(con: duckdb.DuckDBPyConnection, table: TableRef, version: int, old_cols: list[tuple]) -> None:
    now_cols = [(c.name, c.type) for c in columns(con, table)]
    if [(c[0], c[1]) for c in old_cols] == now_cols:
        # copy the old state aside first: inside one transaction, a scan AT an old version would
        # otherwise see this transaction's own DELETE
        con.execute(f"CREATE OR REPLACE TEMP TABLE _airduck_rollback AS SELECT * FROM {table.sql} AT (VERSION => ?)",
                    [version])
        con.execute(f"DELETE FROM {table.sql}")
        con.execute(f"INSERT INTO {table.sql} SELECT * FROM temp._airduck_rollback")
        con.execute("DROP TABLE temp._airduck_rollback")
    else:
        con.execute(f"CREATE OR REPLACE TABLE {table.sql} AS SELECT * FROM {table.sql} AT (VERSION => ?)", [version])


def restore_rows(con: duckdb.DuckDBPyConnection, table: TableRef, version: int, where: str,
                 params: list[Any]) -> None:
    """Inside an open transaction: make the rows of `table` that match `where` what they were at `version` (none if
    the table did not exist then). For state tables whose rows belong to one pipeline table each."""
    if not table_exists(con, table):
        return
    existed = _existed(con, table, version) is not None
    if existed:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _airduck_restore AS SELECT * FROM {table.sql} AT (VERSION => ?) "
                    f"WHERE {where}", [version, *params])
    con.execute(f"DELETE FROM {table.sql} WHERE {where}", params)
    if existed:
        con.execute(f"INSERT INTO {table.sql} SELECT * FROM temp._airduck_restore")
        con.execute("DROP TABLE temp._airduck_restore")


def _ensure_tags_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {TAGS} (name VARCHAR, snapshot_id BIGINT, created_at TIMESTAMPTZ, "
        "created_by VARCHAR, note VARCHAR)"
    )


def tags(con: duckdb.DuckDBPyConnection) -> list[Tag]:
    exists = con.execute(
        f"SELECT count(*) FROM information_schema.tables WHERE table_catalog = '{LAKE}' AND table_schema = 'airduck' "
        "AND table_name = 'tags'"
    ).fetchone()[0]
    if not exists:
        return []
    rows = con.execute(f"SELECT name, snapshot_id, created_at, created_by, note FROM {TAGS} ORDER BY name").fetchall()
    return [Tag(*r) for r in rows]


def tag(con: duckdb.DuckDBPyConnection, name: str, version: int | None = None, note: str | None = None,
        force: bool = False) -> Tag:
    """Name a snapshot (the current one by default). A tagged snapshot is never expired."""
    if not name or not name[0].isalpha() or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SqlError(f"tag name {name!r} must start with a letter and hold only letters, digits, '-', '_' and '.'",
                       hint="numbers are snapshot ids, so a tag cannot be one")
    target = current_snapshot(con) if version is None else int(version)
    if not _snapshot_exists(con, target):
        raise NotFound(f"snapshot {target} does not exist (or has expired)", hint="see `airduck snapshots`")
    existing = {t.name: t for t in tags(con)}
    if name in existing and not force:
        raise SqlError(f"tag {name!r} already points at snapshot {existing[name].snapshot_id}",
                       hint="use --force to move it, or `airduck tag --delete NAME`")
    from airduck.lake.commit import author

    with write(con, f"tag {name} -> snapshot {target}", step="tag", tag=name, snapshot=target):
        _ensure_tags_table(con)
        con.execute(f"DELETE FROM {TAGS} WHERE name = ?", [name])
        con.execute(f"INSERT INTO {TAGS} VALUES (?, ?, now(), ?, ?)", [name, target, author(), note])
    return next(t for t in tags(con) if t.name == name)


def untag(con: duckdb.DuckDBPyConnection, name: str) -> None:
    if name not in {t.name for t in tags(con)}:
        raise NotFound(f"tag {name!r} does not exist")
    with write(con, f"delete tag {name}", step="tag", tag=name):
        con.execute(f"DELETE FROM {TAGS} WHERE name = ?", [name])


def resolve_version(con: duckdb.DuckDBPyConnection, ref: str | int | None) -> int | None:
    """A snapshot id from a number or a tag name."""
    if ref is None:
        return None
    if isinstance(ref, int) or is_id(str(ref)):
        return int(ref)
    for t in tags(con):
        if t.name == ref:
            return t.snapshot_id
    raise NotFound(f"{ref!r} is neither a snapshot id nor a tag", hint="see `airduck snapshots` and `airduck tag --list`")


__all__ = ["Tag", "resolve_version", "rollback", "snapshots", "tag", "tags", "untag"]


def undo_snapshot(con: duckdb.DuckDBPyConnection, snapshot: int) -> list[str]:
    """Inside an open transaction: revert every change that `snapshot` made to the lake's tables, using
    DuckLake's change feed (rows it inserted are deleted, rows it deleted are inserted again; tables it created
    are dropped). Each table is then checked to equal its state just before `snapshot` (row count and an
    order-independent checksum over the columns it had then); any difference raises and the caller rolls back.
    Columns added by `snapshot` are kept (empty for the restored rows). Returns the tables reverted."""
    before = snapshot - 1
    info = con.execute(f"SELECT changes FROM {LAKE}.snapshots() WHERE snapshot_id = ?", [snapshot]).fetchone()
    if info is None:
        raise NotFound(f"snapshot {snapshot} does not exist (or has expired)")
    changes: dict[str, list[str]] = {k: list(v) for k, v in (info[0] or {}).items()}
    touched_ids = {v for k, vals in changes.items() if not k.startswith(("schemas", "tables_created")) for v in vals}
    reverted: list[str] = []
    after = {(r.schema, r.name) for r in _tables_at(con, snapshot)}
    for ref in _tables_at(con, before):  # dropped by this snapshot: bring back
        if (ref.schema, ref.name) not in after:
            con.execute(f"CREATE TABLE {ref.sql} AS SELECT * FROM {ref.sql} AT (VERSION => ?)", [before])
            reverted.append(f"{ref.schema}.{ref.name}")
    for ref in _tables_at(con, snapshot):
        qualified = f"{ref.schema}.{ref.name}"
        old_ids = _ids_at(con, ref, before)
        if not old_ids:  # created by this snapshot
            con.execute(f"DROP TABLE {ref.sql}")
            reverted.append(qualified)
            continue
        ids = _ids_at(con, ref, snapshot)
        if ids != old_ids:  # replaced (CREATE OR REPLACE) by this snapshot: restore the old table whole
            con.execute(f"CREATE OR REPLACE TEMP TABLE _airduck_undo AS SELECT * FROM {ref.sql} AT (VERSION => ?)",
                        [before])
            con.execute(f"CREATE OR REPLACE TABLE {ref.sql} AS SELECT * FROM temp._airduck_undo")
            con.execute("DROP TABLE temp._airduck_undo")
            reverted.append(qualified)
            continue
        if not ids & touched_ids:
            continue
        old_cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {ref.sql} AT (VERSION => ?)", [before]).fetchall()]
        cols = ", ".join(quote_ident(c) for c in old_cols)
        # the target state is measured first: inside a transaction, a scan AT an old version sees the
        # transaction's own deletes
        then = con.execute(f"SELECT count(*), coalesce(sum(hash({cols})), 0) FROM {ref.sql} AT (VERSION => ?)",
                           [before]).fetchone()
        args = [LAKE, ref.schema, ref.name, snapshot, snapshot]
        con.execute("CREATE OR REPLACE TEMP TABLE _airduck_undo AS SELECT * FROM ducklake_table_deletions(?, ?, ?, "
                    "CAST(? AS BIGINT), CAST(? AS BIGINT))", args)
        con.execute(f"DELETE FROM {ref.sql} WHERE rowid IN (SELECT rowid FROM ducklake_table_insertions(?, ?, ?, "
                    "CAST(? AS BIGINT), CAST(? AS BIGINT)))", args)
        con.execute(f"INSERT INTO {ref.sql} ({cols}) SELECT {cols} FROM temp._airduck_undo")
        con.execute("DROP TABLE temp._airduck_undo")
        now = con.execute(f"SELECT count(*), coalesce(sum(hash({cols})), 0) FROM {ref.sql}").fetchone()
        if now != then:
            raise SqlError(f"undo of snapshot {snapshot} would not restore {qualified} exactly; nothing was changed")
        reverted.append(qualified)
    return reverted


def _tables_at(con: duckdb.DuckDBPyConnection, snapshot: int) -> list[TableRef]:
    from airduck.lake.connection import METADATA

    rows = con.execute(
        f"SELECT s.schema_name, t.table_name FROM {METADATA}.ducklake_table t JOIN {METADATA}.ducklake_schema s "
        "USING (schema_id) WHERE t.begin_snapshot <= ? AND (t.end_snapshot IS NULL OR t.end_snapshot > ?) "
        "AND s.begin_snapshot <= ? AND (s.end_snapshot IS NULL OR s.end_snapshot > ?) ORDER BY 1, 2",
        [snapshot, snapshot, snapshot, snapshot],
    ).fetchall()
    return [TableRef(s, n) for s, n in rows]


def _ids_at(con: duckdb.DuckDBPyConnection, ref: TableRef, snapshot: int) -> set[str]:
    from airduck.lake.connection import METADATA

    rows = con.execute(
        f"SELECT t.table_id FROM {METADATA}.ducklake_table t JOIN {METADATA}.ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = ? AND t.table_name = ? AND t.begin_snapshot <= ? "
        "AND (t.end_snapshot IS NULL OR t.end_snapshot > ?)",
        [ref.schema, ref.name, snapshot, snapshot],
    ).fetchall()
    return {str(r[0]) for r in rows}
