"""Awkward DSN passwords never reach any output: CLI text, --json, --debug, run records, the dbt profile,
errors from psycopg and DuckDB (an unreachable catalog, a source and a serving database that do not exist)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import yaml

from airduck.cli.app import main
from tests.conftest import PG_BASE
from tests.unit.test_secrets import AWKWARD, _libpq


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in this process (as `airduck ARGS`); returns the exit code and stdout+stderr."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def pieces(pw: str) -> set[str]:
    """The password and every piece of it long enough to identify it, in the forms a driver may print."""
    parts = {pw, quote(pw, safe=""), quote(pw)}
    parts |= {p for p in re.split(r"[/@:?#&=\s'\"\\,;%]+", pw) if len(p) >= 4}
    return parts


def assert_no_leak(pw: str, text: str, what: str) -> None:
    leaked = [p for p in pieces(pw) if p in text]
    assert not leaked, f"{what} shows {leaked}:\n{text}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_project(root: Path, config: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "leak", **config}, sort_keys=False), encoding="utf-8")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("i", range(len(AWKWARD)))
def test_unreachable_catalog_with_an_awkward_password(tmp_path, capsys, monkeypatch, i):
    monkeypatch.setenv("COLUMNS", "200")
    pw, port = AWKWARD[i], free_port()
    catalog = [f"postgresql://postgres:{pw}@127.0.0.1:{port}/lake",
               f"postgresql://127.0.0.1:{port}/lake?sslmode=disable&password={quote(pw, safe='')}",
               f"postgres:host=127.0.0.1 port={port} dbname=lake user=postgres password={_libpq(pw)}",
               f"postgresql://postgres:{quote(pw, safe='')}@127.0.0.1:{port}/lake"][(0, 0, 1, 2, 0, 3)[i]]
    root = write_project(tmp_path / "p", {"lake": {"catalog": catalog},
                                          "sources": {"orders": {"type": "files", "path": "data/*.csv"}}})
    for args in (["doctor"], ["--debug", "run", "--json"]):  # text, JSON and a traceback
        code, text = cli(capsys, "-p", str(root), *args)
        assert code == (75 if "run" in args else 1), text  # `run` exits 75 on a transient failure (retry it)
        assert "catalog" in text and ("Traceback" in text or "doctor" in args), text
        assert_no_leak(pw, text, f"{catalog!r}: airduck {' '.join(args)}")


def test_working_catalog_failing_source_and_serve_keep_awkward_passwords_out(tmp_path, capsys, monkeypatch,
                                                                             pg_database):
    """Trust auth accepts any password: the catalog works with an awkward one; a source and a serving database
    that do not exist fail; nothing of either password is in the output, the run records or the dbt profile."""
    from airduck.gold.profile import ENV_CATALOG, generated_profile, profile_env
    from airduck.project import load_project

    monkeypatch.setenv("COLUMNS", "200")
    cat_pw, src_pw, serve_pw = "p@ss:hunter2/x", "a b'c\\d#e?f%g", "hun/ter2@x:y"
    base = pg_database().split("://", 1)[1]  # user@host:port/db
    user_host, db = base.rsplit("/", 1)
    user, host = user_host.split("@", 1)
    host_only = host.rsplit(":", 1)
    catalog = f"postgresql://{user}:{cat_pw}@{host}/{db}"
    root = write_project(tmp_path / "p", {
        "lake": {"catalog": catalog},
        "sources": {"orders": {"type": "files", "path": "data/*.csv"},
                    "remote": {"type": "postgres", "dsn": f"postgresql://{user}:{src_pw}@{host}/airduck_no_such_db",
                               "table": "public.t"}},
        "serve": {"postgres": {"dsn": f"host={host_only[0]} port={host_only[1]} user={user} "
                                      f"dbname=airduck_no_such_db password={_libpq(serve_pw)}",
                               "tables": ["bronze.orders"]}},
    })
    secrets = (cat_pw, src_pw, serve_pw)

    def check(text: str, what: str) -> None:
        for pw in secrets:
            assert_no_leak(pw, text, what)

    code, text = cli(capsys, "-p", str(root), "run", "-s", "orders")
    assert code == 0, text  # the catalog works (DuckDB and psycopg read the encoded password back whole)
    check(text, "run -s orders")
    for args in (["--debug", "run", "--json"], ["--debug", "run", "-s", "serve"]):
        code, text = cli(capsys, "-p", str(root), *args)
        assert code == 1, text
        assert "airduck_no_such_db" in text and "Traceback" in text, text
        check(text, " ".join(args))
    code, text = cli(capsys, "-p", str(root), "runs", "--json")
    check(text, "runs --json")
    for run_id in set(re.findall(r'"run_id": "([^"]+)"', text)):
        check(cli(capsys, "-p", str(root), "runs", "show", run_id)[1], f"runs show {run_id}")
    code, text = cli(capsys, "-p", str(root), "doctor", "--json")
    check(text, "doctor --json")
    # the run records themselves, every column of every row
    with psycopg.connect(PG_BASE.rsplit("/", 1)[0] + f"/{db}") as conn:
        for table in ("airduck_runs", "airduck_run_steps"):
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            assert rows
            check(repr(rows), table)
            assert "airduck_no_such_db" in repr(rows) or table == "airduck_runs"
    # the generated dbt profile holds an env_var() reference, the value goes to dbt's environment only
    project = load_project(root)
    profile = generated_profile(project, tmp_path / "profile", "gold_stage").read_text()
    assert yaml.safe_load(profile)["airduck"]["outputs"]["airduck"]["attach"][0]["path"] == \
        "{{ env_var('" + ENV_CATALOG + "') }}"
    check(profile, "profiles.yml")
    assert psycopg.conninfo.conninfo_to_dict(profile_env(project)[ENV_CATALOG].split(":", 2)[2])["password"] == cat_pw


@pytest.mark.timeout(400)
def test_a_200k_character_cell_prints_without_delay(local_projects, capsys, monkeypatch):
    """Masking used to be quadratic: `head`/`sql --json` on a 200,000-character cell took many minutes."""
    import json
    import time

    from airduck.lake.commit import write
    from airduck.lakehouse import Lakehouse

    monkeypatch.setenv("COLUMNS", "200")
    root = local_projects.make()
    with Lakehouse.open(root) as lh, write(lh.con, "seed"):
        lh.con.execute("CREATE TABLE bronze.big AS SELECT 1 AS id, repeat('a', 200000) AS body")
    for args in (["head", "bronze.big", "--json"], ["sql", "SELECT * FROM bronze.big", "--json"], ["head", "bronze.big"]):
        started = time.perf_counter()
        code, text = cli(capsys, "-p", str(root), *args)
        assert code == 0, text[-2000:]
        assert time.perf_counter() - started < 90, args  # seconds on a loaded machine; the old masking took ~20 min
        if "--json" in args:
            assert json.loads(text) == [{"id": 1, "body": "a" * 200_000}]
        else:
            assert text.count("a") >= 200_000
