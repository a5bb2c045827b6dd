"""Opening DuckDB with the DuckLake attached: catalog in SQLite/PostgreSQL, data local or on S3."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import duckdb

if TYPE_CHECKING:
    from airduck.config.project import Project
from airduck.config.secrets import redact
from airduck.errors import CatalogError, CatalogMissing, ConfigError, StorageError
from airduck.lake.extensions import load_extensions

LAKE = "lake"
METADATA = f"__ducklake_metadata_{LAKE}"
SCHEMAS = ("bronze", "silver", "gold", "airduck")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class S3Access:
    endpoint: str | None
    region: str
    key_id: str | None
    secret: str | None
    url_style: str
    use_ssl: bool

    def __repr__(self) -> str:  # never show the secret
        return f"S3Access(endpoint={self.endpoint!r}, region={self.region!r}, key_id={self.key_id!r})"


def s3_access(project: Project) -> S3Access:
    s3 = project.config.lake.s3
    endpoint = s3.endpoint
    use_ssl = s3.use_ssl
    if endpoint and "://" in endpoint:
        parts = urlsplit(endpoint)
        if use_ssl is None:
            use_ssl = parts.scheme == "https"
        endpoint = parts.netloc
    secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
    return S3Access(endpoint, s3.region, s3.access_key_id, secret, s3.url_style, True if use_ssl is None else use_ssl)


def storage_settings(project: Project):
    """The S3 settings of a project for the object-store module."""
    from airduck.storage import S3Settings

    project.require(("lake", "s3"))

    a = s3_access(project)
    return S3Settings(
        endpoint=a.endpoint and (("https://" if a.use_ssl else "http://") + a.endpoint),
        region=a.region,
        access_key_id=a.key_id,
        secret_access_key=a.secret,
        url_style=a.url_style,
        use_ssl=a.use_ssl,
    )


_LIBPQ_KEYWORDS = re.compile(r"^\s*(host|hostaddr|dbname|user|port|password|service)\s*=", re.I)


def catalog_kind(catalog: str) -> str:
    if catalog.startswith(("postgresql://", "postgres://", "postgres:", "postgresql:")) or _LIBPQ_KEYWORDS.match(catalog):
        return "postgres"
    if catalog.endswith((".duckdb", ".ducklake")):
        return "duckdb"
    if catalog.startswith("sqlite:") or catalog.endswith((".sqlite", ".sqlite3", ".db")):
        return "sqlite"
    raise ConfigError(
        f"lake.catalog: cannot tell the catalog type of {redact(catalog)!r}",
        hint="use a path ending in .sqlite (embedded), a postgresql://user@host:5432/db DSN or libpq's "
             "'host=… dbname=…'",
    )


MAIN_BRANCH = "main"
#: the PostgreSQL schema of a branch's catalog (main's DuckLake tables are in the connection's default schema)
BRANCH_SCHEMA_PREFIX = "airduck_branch_"


def branch_of(project: Project) -> str | None:
    """The branch a project's connections attach (None for main)."""
    branch = getattr(project, "branch", None)
    return None if not branch or branch == MAIN_BRANCH else branch


def main_catalog_file(project: Project) -> Path | None:
    """The file of main's embedded catalog (None for PostgreSQL), whatever branch the project is on."""
    catalog = project.config.lake.catalog
    if catalog_kind(catalog) == "postgres":
        return None
    return Path(project.resolve(catalog[len("sqlite:"):] if catalog.startswith("sqlite:") else catalog))


def branch_file(project: Project, branch: str) -> Path:
    """The SQLite catalog file of `branch`: `<catalog folder>/branches/<branch>.sqlite`."""
    main = main_catalog_file(project)
    assert main is not None
    return main.parent / "branches" / f"{branch}.sqlite"


def branch_schema(branch: str) -> str:
    return BRANCH_SCHEMA_PREFIX + branch.replace("-", "_")


def attach_target(project: Project, *, create: bool = True) -> tuple[str, str]:
    """The `ducklake:` ATTACH string and the kind of catalog ('sqlite', 'postgres', 'duckdb').

    `create`: make the folder of a file catalog (a read never creates one, see `catalog_file`). On a branch
    (`project.branch`): the branch's SQLite file; a PostgreSQL branch is the same DSN with `metadata_schema`."""
    catalog = project.config.lake.catalog
    branch = branch_of(project)
    if branch is not None and catalog_kind(catalog) == "sqlite":
        return f"ducklake:sqlite:{branch_file(project, branch)}", "sqlite"
    kind = catalog_kind(catalog)
    if kind == "postgres":
        dsn = catalog
        for prefix in ("postgres:", "postgresql:"):
            if dsn.startswith(prefix) and not dsn.startswith(prefix + "//"):
                dsn = dsn[len(prefix) :]
        return f"ducklake:postgres:{dsn}", kind
    path = catalog[len("sqlite:") :] if catalog.startswith("sqlite:") else catalog
    resolved = Path(project.resolve(path))
    if create:
        resolved.parent.mkdir(parents=True, exist_ok=True)
    return (f"ducklake:sqlite:{resolved}" if kind == "sqlite" else f"ducklake:{resolved}"), kind


CATALOG_SECRET = "airduck_catalog"


def split_catalog_password(target: str) -> tuple[str, str | None]:
    """A `ducklake:postgres:` ATTACH string without its password, and the password (None if it has none).

    The password then goes into a DuckDB secret (`catalog_secret_sql`), so the attach path that
    `duckdb_databases()` and friends show never holds it. Other targets are returned unchanged.
    """
    prefix = "ducklake:postgres:"
    if not target.startswith(prefix):
        return target, None
    from psycopg import conninfo

    try:
        params = conninfo.conninfo_to_dict(target[len(prefix):])
    except Exception:  # libpq cannot parse it: let ATTACH report the error as before
        return target, None
    password = params.pop("password", None)
    if not password:
        return target, None
    return prefix + conninfo.make_conninfo(**{k: str(v) for k, v in params.items()}), str(password)


def catalog_file(project: Project) -> Path | None:
    """The file of an embedded (SQLite or DuckDB) catalog (of the project's branch); None for PostgreSQL."""
    catalog = project.config.lake.catalog
    if catalog_kind(catalog) == "postgres":
        return None
    branch = branch_of(project)
    if branch is not None:
        return branch_file(project, branch)
    return Path(project.resolve(catalog[len("sqlite:"):] if catalog.startswith("sqlite:") else catalog))


def needed_extensions(project: Project, *, writes: bool = True) -> tuple[str, ...]:
    """The DuckDB extensions a lake connection of this project needs, and no others (each LOAD costs time).

    ducklake always; the catalog's scanner (sqlite or postgres); httpfs when the data (or, for writes, the landing
    zone, a source or `serve.export`) is on S3 or HTTP. A read-write connection also loads postgres when a source or
    `serve.postgres` reads or writes PostgreSQL through it."""
    cfg = project.config
    kind = catalog_kind(cfg.lake.catalog)
    names = ["ducklake"]
    if kind == "sqlite":
        names.append("sqlite_scanner")
    remote = [cfg.lake.data_path]
    postgres = kind == "postgres"
    if writes:
        remote.append(cfg.lake.landing)
        for source in cfg.sources.values():
            kind_of = getattr(source, "type", None)
            if kind_of == "http":
                remote.append("http://")
            elif kind_of == "postgres":
                postgres = True
            elif isinstance(getattr(source, "path", None), str):
                remote.append(source.path)
        postgres = postgres or cfg.serve.postgres is not None
        if cfg.serve.export is not None:
            remote.append(cfg.serve.export.path)
    if postgres:
        names.append("postgres_scanner")
    if any(str(p).startswith(("s3://", "s3a://", "http://", "https://", "gs://", "r2://")) for p in remote):
        names.append("httpfs")
    return tuple(names)


def data_path(project: Project, *, create: bool = True) -> str:
    """The lake's data path, ending in `/`; `create`: make the folder when it is local (reads do not)."""
    project.require(("lake", "data_path"))
    path = project.resolve(project.config.lake.data_path)
    if not path.endswith("/"):
        path += "/"
    if create and "://" not in path:
        Path(path).mkdir(parents=True, exist_ok=True)
    return path


def moves_with_project(project: Project) -> bool:
    """Whether the catalog and the data both live at relative paths inside the project folder (the embedded default):
    then the folder can be copied, moved or cloned and the copy uses its own catalog and its own data files.

    DuckLake keeps the data path it was created with (absolute) in the catalog and the file paths relative to it, so
    such a lake is attached with OVERRIDE_DATA_PATH: the data folder of the project as it is now (only for this
    session; the catalog is not changed)."""
    lake = project.config.lake
    data = Path(lake.data_path).expanduser()
    if "://" in lake.data_path or data.is_absolute() or ".." in data.parts:
        return False
    if catalog_kind(lake.catalog) == "postgres":
        return False  # a server catalog is shared: it must keep pointing at one data folder
    path = lake.catalog[len("sqlite:"):] if lake.catalog.startswith("sqlite:") else lake.catalog
    return not Path(path).expanduser().is_absolute()


def _relative_tail(location: str) -> str:
    """`./.airduck//data` -> `/.airduck/data/`: how a relative data path ends once resolved."""
    parts = [p for p in Path(location).parts if p not in ("", ".")]
    return "/" + "/".join(parts) + "/"


def data_path_mismatch(project: Project, stored: str, path: str) -> ConfigError:
    """The error for a catalog that keeps its data somewhere else than where `lake.data_path` points."""
    lake = project.config.lake
    where = f"the lake catalog {redact(lake.catalog)} keeps its data in {stored}, but lake.data_path " \
            f"{lake.data_path!r} is {path}"
    if moves_with_project(project):
        return ConfigError(f"{project.file}: {where}",
                           hint=f"set lake.data_path back to the folder that holds the data (ending in "
                           f"{stored.rstrip('/').rsplit('/', 1)[-1]}/), or move the data folder to {path}")
    return ConfigError(
        f"{project.file}: {where}",
        hint=f"set lake.data_path (or AIRDUCK_DATA_PATH) to {stored}; checkouts or machines that share one catalog "
        "need one data path they all reach (an absolute path or s3://...), else give each its own catalog",
    )


def _check_data_path(con: duckdb.DuckDBPyConnection, project: Project, path: str) -> None:
    """A lake attached with OVERRIDE_DATA_PATH: the catalog's data path must be this project's data path, or the
    same relative path in the folder the project was copied or moved from."""
    row = con.execute(f"SELECT value FROM {METADATA}.ducklake_metadata WHERE key = 'data_path' AND scope IS NULL"
                      ).fetchone()
    stored = row[0] if row else None
    if not stored or stored.rstrip("/") == path.rstrip("/"):
        return
    if not (stored if stored.endswith("/") else stored + "/").endswith(_relative_tail(project.config.lake.data_path)):
        raise data_path_mismatch(project, stored, path)


_MISMATCH = re.compile(r'DATA_PATH parameter "(.*)" does not match existing data path in the catalog "(.*)"')


def create_s3_secret(con: duckdb.DuckDBPyConnection, project: Project, name: str = "airduck_s3") -> None:
    """A DuckDB secret for S3 from the project settings; values never appear in messages."""
    a = s3_access(project)
    opts = ["TYPE s3", "PROVIDER config", f"REGION {quote_literal(a.region)}"]
    if a.key_id:
        opts.append(f"KEY_ID {quote_literal(a.key_id)}")
    if a.secret:
        opts.append(f"SECRET {quote_literal(a.secret)}")
    if a.endpoint:
        opts.append(f"ENDPOINT {quote_literal(a.endpoint)}")
    opts.append(f"URL_STYLE {quote_literal(a.url_style)}")
    opts.append(f"USE_SSL {'true' if a.use_ssl else 'false'}")
    try:
        con.execute(f"CREATE OR REPLACE SECRET {name} ({', '.join(opts)})")
    except duckdb.Error as exc:
        raise StorageError(f"cannot configure S3 access: {redact(str(exc))}") from None


_CONN_HINTS = (  # (pattern, hint, transient)
    (re.compile(r"password authentication failed|authentication failed", re.I), "check the user and password", False),
    (re.compile(r"database .* does not exist", re.I), "create the database first (createdb NAME)", False),
    (re.compile(r"Connection refused|could not connect|timeout|timed out|No route|the database system is "
                r"(starting up|shutting down)|too many clients|server closed the connection", re.I),
     "is the server running and reachable?", True),
)


def _catalog_error(exc: Exception, target: str) -> CatalogError:
    """The error for a catalog that did not attach: transient when its server did not answer (refused, timed out,
    unreachable), terminal when it answered no (password, missing database) or the target is wrong."""
    text = redact(str(exc)).strip().splitlines()
    first = next((ln for ln in text if ln.strip()), "unknown error")
    for pattern, hint, transient in _CONN_HINTS:
        if pattern.search(str(exc)):
            return CatalogError(f"cannot open the lake catalog {redact(target)}: {first}", hint=hint,
                                transient=transient)
    return CatalogError(f"cannot open the lake catalog {redact(target)}: {first}")


_NOT_CREATED = "creating a new DuckLake is explicitly disabled"


def open_lake(project: Project, *, read_only: bool = False, threads: int | None = None,
              extensions: tuple[str, ...] | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with the project's DuckLake attached as `lake` and in use.

    Read-write (the default) creates the catalog and airduck's schemas when they are missing. `read_only`
    attaches READ_ONLY and writes nothing at all (no catalog, no folder): CatalogMissing when there is no
    catalog yet. `extensions`: what to LOAD (default: `needed_extensions`)."""
    project.require(("lake",))
    if read_only:
        file = catalog_file(project)
        if file is not None and not file.exists() and branch_of(project) is not None:
            from airduck.errors import NotFound

            raise NotFound(f"there is no branch {branch_of(project)!r}",
                           hint="see `airduck branch list`; `airduck branch create NAME` makes one")
        if file is not None and not file.exists():
            raise CatalogMissing(f"the lake catalog {redact(project.config.lake.catalog)} does not exist yet",
                                 hint="`airduck setup` or the first `airduck run` creates it")
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        load_extensions(con, extensions or needed_extensions(project, writes=not read_only))
        # what DuckDB spills (large sorts, staged CSV groups) goes to the project's state folder, not to `.tmp`
        # in whatever folder the command runs from; DuckDB removes its files when the connection closes
        con.execute(f"SET temp_directory = {quote_literal(str(project.state_dir / 'tmp'))}")
        path = data_path(project, create=not read_only)
        if path.startswith("s3://") or (not read_only and project.config.lake.landing.startswith("s3://")):
            create_s3_secret(con, project)
        target, password = split_catalog_password(attach_target(project, create=not read_only)[0])
        opts = [f"DATA_PATH {quote_literal(path)}", *branch_options(project)]
        if password is not None:  # the password lives in a secret, never in the attach path (readable as SQL)
            _create_catalog_secret(con, password)
        opts += metadata_parameters(project, password)
        movable = moves_with_project(project)
        if movable:
            opts.append("OVERRIDE_DATA_PATH true")
        if read_only:
            opts.append("READ_ONLY")
        if project.config.lake.data_inlining_row_limit is not None:
            opts.append(f"DATA_INLINING_ROW_LIMIT {int(project.config.lake.data_inlining_row_limit)}")
        _attach(con, f"ATTACH {quote_literal(target)} AS {LAKE} ({', '.join(opts)})", project.config.lake.catalog,
                project=project)
        if movable:
            _check_data_path(con, project, path)
        con.execute(f"USE {LAKE}")
        if not read_only:
            ensure_schemas(con)
        return con
    except BaseException:
        con.close()
        raise


def branch_options(project: Project) -> list[str]:
    """ATTACH options of the project's branch: never create a catalog for it; a PostgreSQL branch's schema."""
    branch = branch_of(project)
    if branch is None:
        return []
    opts = ["CREATE_IF_NOT_EXISTS false"]
    if catalog_kind(project.config.lake.catalog) == "postgres":
        opts.append(f"METADATA_SCHEMA {quote_literal(branch_schema(branch))}")
    return opts


def metadata_parameters(project: Project, password: str | None) -> list[str]:
    """METADATA_PARAMETERS of the ATTACH: the catalog password's secret; on a PostgreSQL branch its schema, so that
    `__ducklake_metadata_<alias>.ducklake_*` (airduck's own catalog queries) read the branch's tables."""
    params = {}
    if password is not None:
        params["SECRET"] = CATALOG_SECRET
    branch = branch_of(project)
    if branch is not None and catalog_kind(project.config.lake.catalog) == "postgres":
        params["SCHEMA"] = branch_schema(branch)
    if not params:
        return []
    return ["METADATA_PARAMETERS MAP {" + ", ".join(f"{quote_literal(k)}: {quote_literal(v)}"
                                                    for k, v in params.items()) + "}"]


def attach_statement(project: Project, alias: str, *, read_only: bool = True) -> str:
    """The ATTACH statement of the project's lake (its branch) under `alias` (secrets made by the caller)."""
    path = data_path(project, create=False)
    target, password = split_catalog_password(attach_target(project, create=False)[0])
    opts = [f"DATA_PATH {quote_literal(path)}", *branch_options(project), *metadata_parameters(project, password)]
    if moves_with_project(project):
        opts.append("OVERRIDE_DATA_PATH true")
    if read_only:
        opts.append("READ_ONLY")
    return f"ATTACH {quote_literal(target)} AS {quote_ident(alias)} ({', '.join(opts)})"


def open_empty_lake(project: Project) -> duckdb.DuckDBPyConnection:
    """An empty DuckLake in memory attached as `lake`: what a read sees of a project whose catalog does not exist
    yet. Nothing is written anywhere (its one snapshot lives in memory; callers say the lake is empty)."""
    con = duckdb.connect()
    try:
        load_extensions(con, ("ducklake",))
        con.execute(f"ATTACH 'ducklake::memory:' AS {LAKE} "
                    f"(DATA_PATH {quote_literal(data_path(project, create=False))})")
        for schema in SCHEMAS:  # as a new lake will have them (in memory only)
            con.execute(f"CREATE SCHEMA {LAKE}.{quote_ident(schema)}")
        con.execute(f"USE {LAKE}")
        return con
    except BaseException:
        con.close()
        raise


def _create_catalog_secret(con: duckdb.DuckDBPyConnection, password: str) -> None:
    try:
        con.execute(f"CREATE OR REPLACE SECRET {CATALOG_SECRET} (TYPE postgres, PASSWORD {quote_literal(password)})")
    except duckdb.Error as exc:
        raise CatalogError(f"cannot configure the catalog password: {redact(str(exc)).replace(password, '***')}") from None


def _attach(con: duckdb.DuckDBPyConnection, statement: str, catalog: str, *, project: Project | None = None) -> None:
    """ATTACH, retrying the races of processes that create a new catalog at the same moment."""
    import time

    from airduck.lake.commit import is_conflict

    for attempt in range(6):
        try:
            con.execute(statement)
            return
        except duckdb.Error as exc:
            racing = is_conflict(exc) or "already exists" in str(exc)
            if _NOT_CREATED in str(exc) and project is not None and branch_of(project) is not None:
                from airduck.errors import NotFound

                raise NotFound(f"there is no branch {branch_of(project)!r}",
                               hint="see `airduck branch list`; `airduck branch create NAME` makes one") from None
            if _NOT_CREATED in str(exc):
                raise CatalogMissing(f"the lake catalog {redact(catalog)} does not exist yet",
                                     hint="`airduck setup` or the first `airduck run` creates it") from None
            if attempt == 5 or not racing:
                mismatch = _MISMATCH.search(str(exc))
                if mismatch and project is not None:
                    raise data_path_mismatch(project, mismatch.group(2), mismatch.group(1)) from None
                raise _catalog_error(exc, catalog) from None
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DETACH {LAKE}")
            time.sleep(0.2 * (attempt + 1))


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    existing = {r[0] for r in con.execute(
        "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = ?", [LAKE]
    ).fetchall()}
    missing = [s for s in SCHEMAS if s not in existing]
    if not missing:
        return
    from airduck.errors import ConcurrentRunError
    from airduck.lake.commit import is_conflict

    for attempt in range(6):  # two first runs at once: the one that loses the race looks again
        try:
            _create_schemas(con, missing)
            return
        except (duckdb.Error, ConcurrentRunError) as exc:
            if attempt == 5 or not (is_conflict(exc) or "already exists" in str(exc)):
                raise
            import time

            time.sleep(0.2 * (attempt + 1))
            existing = {r[0] for r in con.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = ?", [LAKE]).fetchall()}
            missing = [s for s in SCHEMAS if s not in existing]
            if not missing:
                return


def _create_schemas(con: duckdb.DuckDBPyConnection, missing: list[str]) -> None:
    from airduck.lake.commit import write

    with write(con, "create schemas", step="init"):
        for schema in missing:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {LAKE}.{quote_ident(schema)}")
