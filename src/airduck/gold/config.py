"""The `gold:` part of airduck.yml: a normal dbt project building marts in the `gold` schema."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from airduck.config.base import Model


class GoldConfig(Model):
    dbt_project: str | None = Field(None, description="folder of a dbt project, relative to airduck.yml")
    threads: int = Field(1, ge=1)
    vars: dict[str, Any] = Field(default_factory=dict)
    fail_on_warn: bool = Field(False, description="treat dbt tests of severity warn as failures too")
    timeout: float = Field(3600.0, gt=0, description="seconds a dbt command may run before it is stopped")
    on_failure: Any = Field(None, exclude=True, description="removed: see the validator below")

    @field_validator("on_failure")
    @classmethod
    def _removed(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("gold.on_failure was removed: each step of a run now commits on its own, and a failed "
                             "gold step publishes nothing and leaves bronze and silver as they were committed "
                             "(what `keep` did); delete the key")
        return None
