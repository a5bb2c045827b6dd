"""The `gold:` part of airduck.yml: a normal dbt project building marts in the `gold` schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from airduck.config.base import Model


class GoldConfig(Model):
    dbt_project: str | None = Field(None, description="folder of a dbt project, relative to airduck.yml")
    threads: int = Field(1, ge=1)
    vars: dict[str, Any] = Field(default_factory=dict)
    fail_on_warn: bool = Field(False, description="treat dbt tests of severity warn as failures too")
    timeout: float = Field(3600.0, gt=0, description="seconds a dbt command may run before it is stopped")
    on_failure: Literal["revert", "keep"] = Field(
        "revert",
        description="when dbt fails: `revert` undoes the run's bronze+silver commit too (nothing of the run stays); "
        "`keep` keeps bronze+silver and only leaves gold and serving unchanged",
    )
