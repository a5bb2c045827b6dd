"""airduck.yml loading: validation with file:line errors, ${VAR} and .env, env overrides, secrets."""

from __future__ import annotations

import pytest

from airduck.config import redact
from airduck.config.secrets import register_secret
from airduck.errors import ConfigError
from airduck.project import load_project


def write(tmp_path, text: str, env: str | None = None):
    (tmp_path / "airduck.yml").write_text(text)
    if env is not None:
        (tmp_path / ".env").write_text(env)
    return tmp_path


def test_defaults_are_the_embedded_lake(tmp_path):
    p = load_project(write(tmp_path, "name: x\n"), environ={})
    assert p.config.lake.catalog == ".airduck/catalog.sqlite"
    assert p.resolve(p.config.lake.data_path) == str(tmp_path / ".airduck/data") + "/"


def test_unknown_key_names_file_line_and_key(tmp_path):
    write(tmp_path, "name: x\nlake:\n  catalog: a.sqlite\n  data_pth: x/\n")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, environ={})
    assert f"{tmp_path / 'airduck.yml'}:4: lake.data_pth: unknown key" in str(err.value)


def test_wrong_type_and_bad_source_type(tmp_path):
    write(tmp_path, "sources:\n  a:\n    type: ftp\n    path: x\nsilver:\n  b:\n    from: a\n    key: 5\n")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, environ={})
    text = str(err.value)
    assert ":3: sources.a" in text or ":2: sources.a" in text
    assert "files, postgres, http" in text
    assert "silver.b.key" in text


def test_invalid_yaml_points_at_the_line(tmp_path):
    write(tmp_path, "name: x\nlake: [unclosed\n")
    with pytest.raises(ConfigError, match=r"airduck.yml:\d+: invalid YAML"):
        load_project(tmp_path, environ={})


def test_interpolation_from_env_and_dotenv(tmp_path):
    write(tmp_path, "name: ${NAME}\nlake:\n  catalog: ${CAT:-default.sqlite}\n  landing: ${LANDING}\n",
          env="NAME=fromdotenv\nLANDING=dotenv/landing/\n")
    p = load_project(tmp_path, environ={"NAME": "fromenv"})
    assert p.config.name == "fromenv"  # the environment wins over .env
    assert p.config.lake.catalog == "default.sqlite"
    assert p.config.lake.landing == "dotenv/landing/"


def test_missing_variable_is_an_error_where_the_setting_is_used(tmp_path):
    write(tmp_path, "name: x\nsources:\n  s: {type: postgres, dsn: '${SOURCE_DSN}', table: t}\n"
                    "  f: {type: files, path: 'data/*.csv'}\nserve:\n  postgres: {dsn: '${MARTS_DSN}', tables: []}\n")
    p = load_project(tmp_path, environ={})  # loading (and every command that does not use the DSN) works
    p.require(("lake",), ("sources", "f"))
    with pytest.raises(ConfigError) as err:
        p.require(("sources", "s"))
    assert "SOURCE_DSN is not set" in str(err.value) and "airduck.yml:3: sources.s.dsn" in str(err.value)
    with pytest.raises(ConfigError, match=r"airduck.yml:6: serve.postgres.dsn: environment variable MARTS_DSN"):
        p.require(("serve",))
    # a variable of the name (used everywhere), or one in a value that cannot be valid without it, fails at once
    write(tmp_path, "name: ${NAME}\n")
    with pytest.raises(ConfigError, match=r"airduck.yml:1: name: environment variable NAME is not set"):
        load_project(tmp_path, environ={})
    write(tmp_path, "name: x\nsilver:\n  t: {from: s, keep_other_columns: '${KEEP}'}\n")
    with pytest.raises(ConfigError, match=r"airduck.yml:3: silver.t.keep_other_columns: environment variable KEEP"):
        load_project(tmp_path, environ={})
    # a lake setting that an AIRDUCK_* variable overrides does not need its own variable
    write(tmp_path, "name: x\nlake:\n  catalog: ${CATALOG}\n")
    load_project(tmp_path, environ={"AIRDUCK_CATALOG": "other.sqlite"}).require(("lake",))
    with pytest.raises(ConfigError, match="CATALOG is not set"):
        load_project(tmp_path, environ={}).require(("lake",))


def test_yaml_1_2_booleans_keep_on_off_yes_no_as_strings(tmp_path):
    write(tmp_path, "name: x\nsources:\n  o: {type: files, path: 'o/*.csv', header: yes}\n"
                    "  c: {type: files, path: 'c/*.csv', header: off}\n"
                    "silver:\n  o:\n    from: o\n    keep_other_columns: True\n"
                    "    lookups: [{name: c, table: silver.c, on: {c_id: id}, columns: {c_name: name}}]\n"
                    "    columns:\n      yes: {type: VARCHAR}\n      no: {from: n}\n      y: {}\n      off: {}\n")
    cfg = load_project(tmp_path, environ={}).config
    assert cfg.silver["o"].lookups[0].on == {"c_id": "id"}
    assert list(cfg.silver["o"].columns) == ["yes", "no", "y", "off"] and cfg.silver["o"].keep_other_columns is True
    assert cfg.sources["o"].header is True and cfg.sources["c"].header is False  # values where a bool is meant


def test_readme_yaml_examples_are_valid_as_written(tmp_path):
    """Every ```yaml block of the README that is an airduck.yml validates (with its variables set)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert blocks
    env = {"SOURCE_DSN": "postgresql://u:s3cret@127.0.0.1/src", "MARTS_DSN": "postgresql://u@127.0.0.1/marts",
           "TOKEN": "tok-123456", **{f"{n}_TOKEN": f"{n.lower()}-token-0123456789abcdef" for n in ("NOTEBOOK", "CI", "OPS")}}
    checked = 0
    for block in blocks:
        if not re.search(r"^(name|lake|sources|silver|gold|serve):", block, re.M):
            continue
        p = load_project(write(tmp_path, block), environ=env)
        assert not p.missing, p.missing
        checked += 1
    assert checked >= 1


def test_empty_or_nameless_file_says_what_is_missing(tmp_path):
    for text in ("", "# only a comment\n\n", "name:\n"):
        write(tmp_path, text)
        with pytest.raises(ConfigError) as err:
            load_project(tmp_path, environ={})
        assert "name: <project>" in str(err.value), text
        if "name" not in text:
            assert "empty" in str(err.value) and "sources:" in str(err.value)
    p = load_project(write(tmp_path, "name: x\n"), environ={})  # enough for the read commands
    assert not p.has_something_to_run()


def test_environment_overrides(tmp_path):
    write(tmp_path, "name: x\nlake:\n  catalog: a.sqlite\n")
    p = load_project(tmp_path, environ={
        "AIRDUCK_CATALOG": "postgresql://u@h/db", "AIRDUCK_DATA_PATH": "s3://b/data/", "AIRDUCK_LANDING": "s3://b/l/",
        "AIRDUCK_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3tvalue",
        "AWS_REGION": "eu-west-1"})
    lake = p.config.lake
    assert (lake.catalog, lake.data_path, lake.landing) == ("postgresql://u@h/db", "s3://b/data/", "s3://b/l/")
    assert lake.s3.endpoint == "http://127.0.0.1:9000" and lake.s3.region == "eu-west-1"
    assert lake.s3.secret_access_key.get_secret_value() == "s3cr3tvalue"
    assert "s3cr3tvalue" not in repr(p) and "s3cr3tvalue" not in str(p.config.model_dump())
    assert redact("error with s3cr3tvalue inside") == "error with *** inside"


def test_redact_masks_dsn_passwords_and_registered_secrets():
    register_secret("tok-abcdef-123")
    assert redact("postgresql://bob:hunter2@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("host=db password=hunter2 user=bob") == "host=db password=*** user=bob"
    assert redact("Authorization: Bearer tok-abcdef-123") == "Authorization: Bearer ***"


def test_project_is_found_upwards(tmp_path, monkeypatch):
    write(tmp_path, "name: up\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert load_project(environ={}).root == tmp_path
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(ConfigError, match=r"no airduck\.yml found"):
        load_project(environ={})


def test_redact_handles_at_signs_and_empty_users():
    assert redact("postgresql://u:p@ssword1@host/db") == "postgresql://u:***@host/db"
    assert redact("postgresql://:secretpw@host/db") == "postgresql://:***@host/db"
    assert redact("postgresql://bob@db/x") == "postgresql://bob@db/x"


def test_http_tokens_in_headers_and_params_are_secrets(tmp_path):
    write(tmp_path, "sources:\n  api:\n    type: http\n    url: http://127.0.0.1:1/items\n"
                    "    headers: {X-Api-Token: '${TOKEN}', Accept: application/json}\n"
                    "    params: {api_key: '${KEY}', page_size: 10}\n")
    load_project(tmp_path, environ={"TOKEN": "tok-1234567", "KEY": "key-7654321"})
    assert redact("GET http://x/items?api_key=key-7654321 X-Api-Token: tok-1234567") == \
        "GET http://x/items?api_key=*** X-Api-Token: ***"
    assert redact("application/json") == "application/json"
