"""The `api:` part of airduck.yml: who may call the REST API (tokens and roles) and its limits.

    api:
      tokens:
        ci:       {token: "${AIRDUCK_CI_TOKEN}", role: write}
        analysts: {token: "${ANALYSTS_TOKEN}", role: read}
      max_upload_mb: 512

Token values come from the environment (``${VAR}``); they are registered as secrets (masked in every output) and
compared in constant time. The environment variable ``AIRDUCK_API_TOKEN`` adds an admin token named ``env``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from airduck.config.base import Model

Role = Literal["read", "write", "admin"]
#: the roles in order: each may do what the ones before it may
ROLES: tuple[str, ...] = ("read", "write", "admin")
#: a token shorter than this is refused (a guessable token is no protection)
MIN_TOKEN_CHARS = 16


class ApiToken(Model):
    token: SecretStr = Field(description="the bearer token; write it as ${VAR} so it stays out of the file")
    role: Role = "read"

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if "${" in text:  # an unset variable: `airduck serve` names it (other commands do not need the token)
            return value
        if len(text) < MIN_TOKEN_CHARS:
            raise ValueError(f"an API token must be at least {MIN_TOKEN_CHARS} characters "
                             "(make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        return value


class ApiConfig(Model):
    tokens: dict[str, ApiToken] = Field(default_factory=dict, description="token name -> token and role")
    max_upload_mb: float = Field(1024.0, gt=0, description="largest object PUT /api/v1/objects/{key} accepts")
    sql_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="time limit of POST /api/v1/sql")
    sql_max_rows: int = Field(100_000, ge=1, le=10_000_000, description="most rows POST /api/v1/sql returns")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="how long a browser sign-in lasts")
    open_branches: int = Field(8, ge=1, le=1000, description="branches read with ?branch= whose facades stay "
                               "open (more: the least recently read is closed once no request uses it)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
