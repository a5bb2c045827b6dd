"""The ``airflow:`` block of airduck.yml: how the generated DAGs schedule, retry, time out and where tasks run.

Owned by the orchestrate package and composed into the project's model by :mod:`airduck.project` (this module
imports only the config base, never Airflow).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from airduck.config.base import Model
from airduck.errors import EXIT_TRANSIENT

#: the exit code of `airduck run --step` for a transient failure (EX_TEMPFAIL): the pod task retries only on it
TRANSIENT_EXIT_CODE = EXIT_TRANSIENT

STEP_KINDS = ("ingest", "silver", "gold", "serve", "export", "maintenance", "quality", "branch")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class Resources(Model):
    """Kubernetes requests and limits of a pod (``cpu``/``memory`` quantities such as ``500m``, ``2Gi``)."""

    requests: dict[Literal["cpu", "memory", "ephemeral-storage"], str] = Field(default_factory=dict)
    limits: dict[Literal["cpu", "memory", "ephemeral-storage"], str] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for key, q in value.items():
            if not _QUANTITY.match(str(q)):
                raise ValueError(f"{key}: {q!r} is not a Kubernetes quantity (e.g. 500m, 1, 512Mi, 2Gi)")
        return {k: str(v) for k, v in value.items()}


class SecretRef(Model):
    """An environment variable read from a Kubernetes Secret (``secretKeyRef``): the DAG names it, never holds it."""

    secret: str
    key: str


class KindSettings(Model):
    """Overrides for the tasks of one step kind (ingest, silver, gold, serve, export, maintenance, quality, and
    branch: the create, audit and merge tasks of atomic DAG runs)."""

    timeout_minutes: int | None = Field(None, ge=1)
    retries: int | None = Field(None, ge=0, le=20)
    resources: Resources | None = None
    pool: str | None = None


class KubernetesSettings(Model):
    """Where and how the pod of each step runs (mode ``kubernetes``): `airduck run --step <id>` in the image."""

    image: str = "airduck:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)
    namespace: str = "airduck"
    service_account: str | None = None
    #: the project folder inside the image (`-p`); None: the image's working directory is the project
    project_dir: str | None = None
    #: ConfigMaps whose keys become environment variables (envFrom), e.g. AIRDUCK_DATA_PATH, AIRDUCK_S3_ENDPOINT
    config_maps: list[str] = Field(default_factory=list)
    #: environment variables from Kubernetes Secrets (secretKeyRef), e.g. AIRDUCK_CATALOG: {secret: lake, key: dsn}
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    #: whole Secrets as environment variables (envFrom secretRef)
    secret_env_from: list[str] = Field(default_factory=list)
    #: plain (non-secret) environment variables
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=lambda: Resources(
        requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "2Gi"}))
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    startup_timeout_seconds: int = Field(300, ge=10)
    #: the image's user (deploy/docker/Dockerfile: 10001, who owns /project); the pod runs as it, never as root
    run_as_user: int = Field(10001, ge=1)

    @field_validator("secrets", "env")
    @classmethod
    def _env_names(cls, value: dict) -> dict:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS.match(value) or len(value) > 63:
            raise ValueError(f"{value!r} is not a Kubernetes namespace name (lower-case letters, digits, -)")
        return value

    @model_validator(mode="after")
    def _no_plain_secrets(self) -> KubernetesSettings:
        for name in self.env:
            if re.search(r"secret|password|token|dsn|key", name, re.I) and name not in self.secrets:
                raise ValueError(f"env: {name} looks like a secret: give it under `secrets:` as "
                                 f"{{secret: <Secret name>, key: <key>}} (a secretKeyRef), not as a value in the DAG")
        return self


class MaintenanceDag(Model):
    """The maintenance DAG: lake maintenance steps in order, on their own schedule (None: only when triggered)."""

    enabled: bool = True
    schedule: str | None = "@daily"
    steps: list[Literal["flush", "merge", "rewrite", "expire", "cleanup"]] = Field(
        default_factory=lambda: ["flush", "merge", "expire", "cleanup"])


class QualityDag(Model):
    """The data-quality DAG: a task per table checks its latest quality results (gates) after the tables change.

    `schedule` None (default): it runs whenever the pipeline DAG updates a table (Asset schedule); a cron or
    preset runs it on time instead; ``enabled: false`` does not generate it."""

    schedule: str | None = None
    enabled: bool = True
    #: a `freshness` task: fails when a table is older than its `freshness:` policy's error_after
    #: (`Lakehouse.freshness`, `airduck freshness`; skipped with a note on an airduck without them)
    freshness: bool = True


class AirflowConfig(Model):
    """``airflow:`` in airduck.yml (every key optional)."""

    mode: Literal["local", "kubernetes"] = "local"
    dag_id: str | None = None  # default: airduck_<project>
    schedule: str | None = None  # a cron or preset (@daily); None: only when triggered
    start_date: date = date(2026, 1, 1)
    catchup: bool = False
    max_active_runs: int = Field(1, ge=1)
    max_active_tasks: int = Field(16, ge=1)
    #: plan selectors (as `airduck run -s`): only these steps become tasks
    select: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    owner: str = "airduck"
    #: retries of a task on a transient failure (network, catalog conflict); terminal failures never retry
    retries: int = Field(2, ge=0, le=20)
    retry_delay_seconds: int = Field(60, ge=1)
    retry_exponential_backoff: float = Field(2.0, ge=0)
    max_retry_delay_seconds: int = Field(1800, ge=1)
    timeout_minutes: int = Field(60, ge=1)
    #: write-audit-publish DAG runs (default: `run.atomic` of airduck.yml): a first task forks a branch for the run
    #: (`run-<run id>`) from main, every step task runs on it, an audit task runs the `audit:` queries there, a merge
    #: task merges it into main in one commit and deletes it; serve and export run after the merge, from main.
    #: A failed step, audit or merge keeps the branch (the task's message names it). See docs/branches.md.
    atomic: bool | None = None
    #: the DAG run should finish within this many minutes of being queued (Airflow 3 deadline alert)
    deadline_minutes: int | None = Field(None, ge=1)
    #: per kind of task; `branch`: the create, audit and merge tasks of atomic DAG runs
    kinds: dict[Literal["ingest", "silver", "gold", "serve", "export", "maintenance", "quality", "branch"],
                KindSettings] = \
        Field(default_factory=dict)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    maintenance: MaintenanceDag = Field(default_factory=MaintenanceDag)
    quality: QualityDag = Field(default_factory=QualityDag)

    @field_validator("dag_id")
    @classmethod
    def _dag_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9_.\-]{1,200}$", value):
            raise ValueError(f"{value!r}: a DAG id has letters, digits, _, . and - only")
        return value

    def kind(self, kind: str) -> KindSettings:
        return self.kinds.get(kind) or KindSettings()  # type: ignore[call-overload]

    def timeout(self, kind: str) -> int:
        return self.kind(kind).timeout_minutes or self.timeout_minutes

    def retries_for(self, kind: str) -> int:
        got = self.kind(kind).retries
        return self.retries if got is None else got

    def resources(self, kind: str) -> Resources:
        return self.kind(kind).resources or self.kubernetes.resources
