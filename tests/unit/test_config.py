"""airduck.yml loading: validation with file:line errors, ${VAR} and .env, env overrides, secrets."""

from __future__ import annotations

import pytest

from airduck.config import load_project, redact
from airduck.config.secrets import register_secret
from airduck.errors import ConfigError


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


def test_missing_variable_is_an_error_naming_it(tmp_path):
    write(tmp_path, "name: x\nsources:\n  s: {type: postgres, dsn: '${SOURCE_DSN}', table: t}\n")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path, environ={})
    assert "SOURCE_DSN is not set" in str(err.value) and ":3:" in str(err.value)


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
