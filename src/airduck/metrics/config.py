"""The `metrics:` and `alerts:` parts of airduck.yml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from airduck.config.base import Model

ALERT_KINDS = ("run_failed", "gate_failed", "stale")


def _no_spaces(value: str | None) -> str | None:
    """A URL with a space or a control character fails every request (and http.client's error echoes it)."""
    if value is not None and any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("a URL may not hold spaces or control characters (percent-encode them, e.g. %20)")
    return value


class MetricsConfig(Model):
    """Where a batch run's metrics go: a Pushgateway, a node-exporter textfile, or both."""

    pushgateway: str | None = Field(None, description="Pushgateway URL, e.g. http://pushgateway:9091")
    textfile: str | None = Field(None, description="a *.prom file for node-exporter's textfile collector")
    job: str = Field("airduck", description="the Pushgateway job name")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds a push may take")

    @field_validator("pushgateway")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and "${" not in value and not value.startswith(("http://", "https://")):
            raise ValueError("pushgateway must be an http:// or https:// URL")
        return _no_spaces(value)

    @field_validator("textfile")
    @classmethod
    def _prom(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".prom"):
            raise ValueError("node-exporter's textfile collector reads only files ending in .prom")
        return value


class Webhook(Model):
    """One webhook: Slack-compatible (`{"text"}`: Slack, Mattermost, Rocket.Chat, Discord's /slack endpoint),
    Telegram's Bot API (`{"chat_id", "text"}`, url ``https://api.telegram.org/bot<token>/sendMessage``), or a
    generic JSON body with the alert's fields."""

    url: str = Field(description="the webhook URL; a token in it is a secret (use ${VAR})")
    format: Literal["slack", "telegram", "generic"] = "slack"
    chat_id: str | int | None = Field(None, description="Telegram: the chat to post to")
    name: str | None = Field(None, description="shown instead of the URL in messages")
    on: list[Literal["run_failed", "gate_failed", "stale"]] | None = Field(
        None, description="alert kinds for this webhook (default: the block's `on`)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "${" not in value and not value.startswith(("http://", "https://")):  # ${VAR} unset: fails when used
            raise ValueError("a webhook url must be http:// or https://")
        return _no_spaces(value)

    @model_validator(mode="after")
    def _telegram(self) -> Webhook:
        if self.format == "telegram" and self.chat_id is None:
            raise ValueError("a telegram webhook needs chat_id")
        return self


class AlertsConfig(Model):
    """`alerts:`: notifications on run failure, gate failure and stale tables."""

    webhooks: list[Webhook] = Field(default_factory=list)
    on: list[Literal["run_failed", "gate_failed", "stale"]] = Field(default_factory=lambda: list(ALERT_KINDS))
    retries: int = Field(3, ge=0, le=10, description="attempts after the first on a network error, 429 or 5xx")
    timeout: float = Field(5.0, gt=0, le=60, description="seconds per attempt")
    backoff: float = Field(0.5, ge=0, le=30, description="seconds before the first retry (doubles each time)")
