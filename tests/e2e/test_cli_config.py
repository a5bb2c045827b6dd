"""airduck.yml as a user writes it, through the CLI: an unset ${VAR} blocks only what uses it, YAML 1.2
spellings (`on:` unquoted) work in a real run, an empty file or a project with nothing to run says so."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli_secrets import cli

PROJECT = """\
name: shop
sources:
  orders: {type: files, path: "data/orders/*.csv"}
  customers: {type: postgres, dsn: "${SOURCE_DSN}", table: public.customers}
  companies: {type: files, path: "data/companies/*.csv"}
silver:
  companies: {from: companies, key: [company_id], mode: merge, columns: {company_id: {type: BIGINT}, name: {}}}
  orders:
    from: orders
    key: [id]
    mode: merge
    columns: {id: {type: BIGINT}, company_id: {type: BIGINT}}
    lookups: [{name: company, table: silver.companies, on: {company_id: company_id}, columns: {company: name}}]
"""


def _write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "airduck.yml").write_text(text, encoding="utf-8")
    return root


def test_unset_variable_blocks_only_what_uses_it_and_unquoted_on_works(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("SOURCE_DSN", raising=False)
    root = _write(tmp_path / "shop", PROJECT)
    for folder, text in (("orders", "id,company_id\n1,10\n2,20\n3,30\n"), ("companies", "company_id,name\n10,Acme\n20,Umbrella\n")):
        (root / "data" / folder).mkdir(parents=True)
        (root / "data" / folder / "a.csv").write_text(text, encoding="utf-8")
    p = ["-p", str(root)]
    # the files sources run; the lookup with its unquoted `on:` joins the companies
    code, text = cli(capsys, *p, "run", "-s", "orders", "-s", "companies")
    assert code == 0, text
    code, text = cli(capsys, *p, "sql", "SELECT id, company FROM silver.orders ORDER BY id", "--json")
    assert code == 0, text
    assert json.loads(text) == [{"id": 1, "company": "Acme"}, {"id": 2, "company": "Umbrella"}, {"id": 3, "company": None}]
    code, text = cli(capsys, *p, "tables", "--json")
    assert code == 0 and {"schema": "bronze", "name": "orders", "table": "bronze.orders"} in json.loads(text), text
    code, text = cli(capsys, *p, "head", "bronze.companies", "--json")
    assert code == 0 and len(json.loads(text)) == 2, text
    # doctor: the variable is one failed check, every other check still runs and passes
    code, text = cli(capsys, *p, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(text)}
    assert code == 1
    assert not checks["variables"]["ok"] and "SOURCE_DSN is not set" in checks["variables"]["detail"]
    assert "airduck.yml:4: sources.customers.dsn" in checks["variables"]["detail"]
    assert all(c["ok"] for name, c in checks.items() if name != "variables"), checks
    code, text = cli(capsys, *p, "doctor")
    assert code == 1 and "fail variables" in text and "ok   catalog" in text, text
    # what uses the DSN fails, naming the variable, the key and the line
    for args in (["run"], ["run", "-s", "customers"]):
        code, text = cli(capsys, *p, *args)
        assert code == 1 and "airduck.yml:4: sources.customers.dsn: environment variable SOURCE_DSN is not set" in text, text
    # an unset catalog variable blocks the lake, and doctor says so beside the other checks
    _write(root, PROJECT.replace("name: shop\n", "name: shop\nlake:\n  catalog: ${CATALOG_DSN}\n"))
    code, text = cli(capsys, *p, "tables")
    assert code == 1 and "CATALOG_DSN is not set" in text, text
    code, text = cli(capsys, *p, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(text)}
    assert code == 1 and not checks["catalog"]["ok"] and "CATALOG_DSN" in checks["catalog"]["detail"]
    assert checks["storage (data)"]["ok"] and checks["extensions"]["ok"]


def test_empty_file_and_nothing_to_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    root = tmp_path / "empty"
    for text in ("", "# nothing yet\n"):
        _write(root, text)
        code, out = cli(capsys, "-p", str(root), "tables")
        assert code == 1 and "empty" in out and "name: <project>" in out and "sources:" in out, out
    root = tmp_path / "fresh"
    code, out = cli(capsys, "init", str(root))
    assert code == 0 and "add a source" in out, out
    code, out = cli(capsys, "-p", str(root), "tables", "--json")  # read commands work on a name-only project
    assert code == 0 and json.loads(out) == [], out
    code, out = cli(capsys, "-p", str(root), "run")
    assert code == 1 and "nothing to run" in out and "sources:" in out, out
    code, out = cli(capsys, "-p", str(root), "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert code == 1 and not checks["pipeline"]["ok"] and "nothing to run" in checks["pipeline"]["detail"]
    assert all(c["ok"] for name, c in checks.items() if name != "pipeline"), checks
