"""SOPS-encrypted secrets files (`secrets: [secrets.enc.yaml]`), with a real age key (pyrage) and real `sops`.

Their keys become `${VAR}` values; the values are registered as secrets and never reach output or run records;
a missing `sops`, a wrong key, a tampered or a plain file give one error line that names the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from airduck.config.secrets import redact
from airduck.errors import ConfigError
from tests.conftest import PG_BASE
from tests.e2e.test_cli_secrets import assert_no_leak, cli

pyrage = pytest.importorskip("pyrage")  # a dev dependency: always installed by `uv sync`

BIN = Path(sys.executable).parent
SOPS = BIN / "sops"
CAT_PW = "sops:cat/pa55@word"
SERVE_PW = "s3rve-Pw-from-sops"


def _path_with_sops() -> str:
    return f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two age identities (the right one and a wrong one) as key files, and the right one's recipient."""
    folder = tmp_path_factory.mktemp("age")
    out: dict[str, Path] = {}
    for name in ("right", "wrong"):
        identity = pyrage.x25519.Identity.generate()
        key = folder / f"{name}.txt"
        key.write_text(f"# public key: {identity.to_public()}\n{identity}\n", encoding="utf-8")
        key.chmod(0o600)
        out[name] = key
        out[f"{name}_recipient"] = Path(str(identity.to_public()))
    return out


def encrypt(path: Path, values: dict, recipient: str) -> Path:
    """Write `values` to `path` and encrypt it in place with real `sops --encrypt` for an age recipient."""
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", "PATH": _path_with_sops()}
    proc = subprocess.run([str(SOPS), "--encrypt", "--age", recipient, "--in-place", str(path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text(encoding="utf-8")
    for value in values.values():
        assert len(str(value)) < 4 or str(value) not in text  # really encrypted
    return path


def project(root: Path, config: dict, secrets_file: str = "secrets.enc.yaml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "sopsy", "secrets": [secrets_file], **config},
                                                     sort_keys=False), encoding="utf-8")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\n", encoding="utf-8")
    return root


@pytest.fixture
def sops_env(monkeypatch, keys):
    monkeypatch.setenv("PATH", _path_with_sops())
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys["right"]))
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def test_decrypted_keys_fill_vars_and_never_reach_output_or_run_records(tmp_path, capsys, keys, sops_env,
                                                                        pg_database):
    """The catalog's password and the serving DSN's password come from the SOPS file; the catalog works (trust
    auth accepts any password), the serving database does not exist, so the error path runs too."""
    from airduck.project import load_project

    base = pg_database().split("://", 1)[1]
    user_host, db = base.rsplit("/", 1)
    user, host = user_host.split("@", 1)
    root = project(tmp_path / "p", {
        "lake": {"catalog": f"postgresql://{user}:${{CAT_PW}}@{host}/{db}"},
        "sources": {"orders": {"type": "files", "path": "data/*.csv"}},
        "serve": {"postgres": {"dsn": f"postgresql://{user}:${{SERVE_PW}}@{host}/airduck_no_such_db",
                               "tables": ["bronze.orders"]}},
    })
    encrypt(root / "secrets.enc.yaml", {"CAT_PW": CAT_PW, "SERVE_PW": SERVE_PW, "RETRIES": 3},
            str(keys["right_recipient"]))

    loaded = load_project(root)
    assert loaded.env["RETRIES"] == "3" and loaded.env["SERVE_PW"] == SERVE_PW
    assert loaded.secret_vars == {"CAT_PW", "SERVE_PW", "RETRIES"}
    assert SERVE_PW in loaded.config.serve.postgres.dsn
    assert redact(f"x {SERVE_PW} y {CAT_PW}") == "x *** y ***"  # registered as secrets

    code, text = cli(capsys, "-p", str(root), "run", "-s", "orders")
    assert code == 0, text
    code, text2 = cli(capsys, "-p", str(root), "--debug", "run", "-s", "serve")
    assert code == 1 and "airduck_no_such_db" in text2, text2
    code, text3 = cli(capsys, "-p", str(root), "runs", "--json")
    for pw in (CAT_PW, SERVE_PW):
        for what, out in (("run", text), ("run --debug", text2), ("runs --json", text3)):
            assert_no_leak(pw, out, what)
    with psycopg.connect(PG_BASE.rsplit("/", 1)[0] + f"/{db}") as conn:
        for table in ("airduck_runs", "airduck_run_steps"):
            rows = repr(conn.execute(f"SELECT * FROM {table}").fetchall())
            assert "orders" in rows or table == "airduck_runs"
            for pw in (CAT_PW, SERVE_PW):
                assert_no_leak(pw, rows, table)
    for file in (root / ".airduck").rglob("*"):  # nothing decrypted is written to disk
        if file.is_file() and file.stat().st_size < 5_000_000:
            data = file.read_bytes()
            assert SERVE_PW.encode() not in data and CAT_PW.encode() not in data, file


def test_the_environment_wins_over_the_file_and_the_file_over_dotenv(tmp_path, keys, sops_env, monkeypatch):
    from airduck.project import load_project

    root = project(tmp_path / "p", {"sources": {"orders": {"type": "files", "path": "${ORDERS_GLOB}"}},
                                    "lake": {"data_path": "${DATA_DIR}/"}})
    encrypt(root / "secrets.enc.yaml", {"ORDERS_GLOB": "data/*.csv", "DATA_DIR": "from-sops"},
            str(keys["right_recipient"]))
    (root / ".env").write_text("ORDERS_GLOB=from-dotenv\nDATA_DIR=from-dotenv\n", encoding="utf-8")
    monkeypatch.setenv("DATA_DIR", "from-env")
    cfg = load_project(root).config
    assert cfg.sources["orders"].path == "data/*.csv"
    assert cfg.lake.data_path.rstrip("/") == "from-env"


def _error(root: Path) -> str:
    from airduck.project import load_project

    with pytest.raises(ConfigError) as exc:
        load_project(root)
    return str(exc.value)


def test_missing_sops_wrong_key_tampered_and_plain_files_give_one_clear_line(tmp_path, capsys, keys, sops_env,
                                                                              monkeypatch):
    config = {"sources": {"orders": {"type": "files", "path": "data/*.csv", "format": "${FMT}"}}}
    root = project(tmp_path / "p", config)
    secret_file = encrypt(root / "secrets.enc.yaml", {"FMT": "csv", "TOKEN": "tok-123456-secret"},
                          str(keys["right_recipient"]))
    from airduck.project import load_project

    assert load_project(root).config.sources["orders"].format == "csv"

    # the CLI prints one red line, exit 1, no traceback, naming the fix
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys["wrong"]))
    code, text = cli(capsys, "-p", str(root), "plan")
    assert code == 1 and "Traceback" not in text, text
    assert "no key could decrypt" in text and "SOPS_AGE_KEY_FILE" in text and "airduck.yml:" in text, text
    assert len([line for line in text.splitlines() if line.strip()]) <= 3, text

    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys["right"]))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    msg = _error(root)
    assert "`sops` binary is not on PATH" in msg and "install sops" in msg, msg
    monkeypatch.setenv("PATH", _path_with_sops())

    original = secret_file.read_text(encoding="utf-8")
    lines = original.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("TOKEN: ENC["))
    data = lines[i].split("data:", 1)[1]
    lines[i] = lines[i].replace("data:" + data[:2], "data:" + ("AA" if data[:2] != "AA" else "BB"), 1)
    secret_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    msg = _error(root)
    assert "changed after it was encrypted" in msg and "sops edit" in msg, msg

    secret_file.write_text(original.replace("FMT: ENC", "FORMAT: ENC"), encoding="utf-8")  # a renamed key
    assert "changed after it was encrypted" in _error(root)

    secret_file.write_text("FMT: csv\n", encoding="utf-8")
    msg = _error(root)
    assert "not encrypted with sops" in msg and "sops encrypt" in msg, msg

    secret_file.unlink()
    assert "not found" in _error(root)
    for shown in (msg, text):
        assert "tok-123456-secret" not in shown


def test_secrets_must_be_a_list_of_files(tmp_path, sops_env):
    root = tmp_path / "p"
    root.mkdir()
    (root / "airduck.yml").write_text("name: x\nsecrets: secrets.enc.yaml\n", encoding="utf-8")
    msg = _error(root)
    assert "airduck.yml:2: secrets" in msg and "expected a list of SOPS-encrypted files" in msg, msg
    (root / "airduck.yml").write_text("name: x\nsecrets: [\"${SECRETS_DIR}/s.enc.yaml\"]\n", encoding="utf-8")
    msg = _error(root)
    assert "SECRETS_DIR is not set" in msg, msg
