"""The DAG factory: a project's plan snapshot -> Airflow DAGs. The only module of airduck that imports Airflow.

- the pipeline DAG (``airduck_<project>``): a task per plan step (``ingest:<source>``, ``silver:<table>``, one per
  dbt model ``gold:<model>``, ``serve:…``, ``export:…``) in a task group per layer, wired by the plan's
  dependencies; every table a step writes is an outlet Asset (``airduck://<project>/<schema>/<table>``), every lake
  table it reads an inlet, so other DAGs can be scheduled on them;
- the maintenance DAG (``airduck_<project>_maintenance``): flush -> merge -> expire -> cleanup, on its schedule;
- the data-quality DAG (``airduck_<project>_quality``): a task per table with quality checks fails when the
  table's latest results have a failed gate, and a ``freshness`` task fails when a table is older than its
  policy allows; by default it runs whenever the pipeline updates those tables.

Two modes (``airflow.mode``): ``local`` runs each step in the worker through the facade; ``kubernetes`` runs
``airduck run --step <id>`` in a pod of the project's image (:class:`AirduckPodOperator`). Either way a transient
failure (network, catalog conflict) is retried with backoff and a terminal one (bad data, a failed gate) fails the
task at once: in a pod, `airduck` exits with :data:`TRANSIENT_EXIT_CODE` for transient failures only.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, AsyncCallback, DeadlineAlert, DeadlineReference, TaskGroup
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from kubernetes.client import models as k8s

from airduck.orchestrate.config import TRANSIENT_EXIT_CODE, AirflowConfig
from airduck.orchestrate.files import load_snapshot

log = logging.getLogger("airduck.airflow")

LAYER_ORDER = ("bronze", "silver", "gold", "serve")
LABEL = "airduck.io"


def build_dags(project: str | Path | None, snapshot: str | Path | None = None) -> dict[str, DAG]:
    """Every DAG of a project, by dag id (a DAG file does ``globals().update(build_dags(...))``)."""
    snap = load_snapshot(project, snapshot)
    cfg = AirflowConfig.model_validate(snap["airflow"])
    dags = [pipeline_dag(snap, cfg)]
    if cfg.maintenance.enabled:
        dags.append(maintenance_dag(snap, cfg))
    if cfg.quality.enabled and _quality_tables(snap):
        dags.append(quality_dag(snap, cfg))
    return {d.dag_id: d for d in dags}


# -- names --------------------------------------------------------------------------------------
def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", text)


def dag_id(snap: dict[str, Any], cfg: AirflowConfig, suffix: str = "") -> str:
    return (cfg.dag_id or f"airduck_{_safe(snap['project'])}") + suffix


def task_id(step: dict[str, Any]) -> str:
    """The task of a step inside its layer's group: ``ingest:orders`` -> ``bronze.orders``, ``silver:orders`` ->
    ``silver.orders``, ``gold:m`` -> ``gold.m``, ``serve:m`` -> ``serve.serve_m``, ``export:m`` -> ``serve.export_m``
    (the group adds the layer)."""
    if step["kind"] in ("ingest", "silver", "gold"):
        return _safe(step["name"])
    return _safe(f"{step['kind']}_{step['name']}")


def asset(project: str, table: str) -> Asset:
    """The Asset of a lake table (``silver.orders``) or of a served/exported output (``kind:name``)."""
    if ":" in table:
        kind, _, name = table.partition(":")
        return Asset(name=f"airduck.{project}.{kind}.{name}", uri=f"airduck://{project}/{kind}/{name}",
                     group="airduck")
    schema, _, name = table.partition(".")
    return Asset(name=f"airduck.{project}.{table}", uri=f"airduck://{project}/{schema}/{name}", group="airduck")


def _outputs(project: str, step: dict[str, Any]) -> list[Asset]:
    return [asset(project, d["name"] if d["kind"] == "lake" else f"{d['kind']}:{d['name']}") for d in step["outputs"]]


def _inputs(project: str, step: dict[str, Any]) -> list[Asset]:
    return [asset(project, d["name"]) for d in step["inputs"] if d["kind"] == "lake"]


def _label(value: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric."""
    value = re.sub(r"[^A-Za-z0-9_.\-]", "-", value)[:63]
    return value.strip("-_.") or "x"


# -- common settings ----------------------------------------------------------------------------
def _default_args(cfg: AirflowConfig) -> dict[str, Any]:
    return {"owner": cfg.owner, "retries": cfg.retries, "retry_delay": timedelta(seconds=cfg.retry_delay_seconds),
            "retry_exponential_backoff": cfg.retry_exponential_backoff,
            "max_retry_delay": timedelta(seconds=cfg.max_retry_delay_seconds)}


def _task_args(cfg: AirflowConfig, kind: str) -> dict[str, Any]:
    args: dict[str, Any] = {"retries": cfg.retries_for(kind),
                            "execution_timeout": timedelta(minutes=cfg.timeout(kind))}
    if cfg.kind(kind).pool:
        args["pool"] = cfg.kind(kind).pool
    return args


async def deadline_missed(**kwargs: Any) -> None:
    """The deadline callback (runs in the triggerer): a DAG run of the project did not finish in time."""
    log.warning("airduck: DAG run %s of %s missed its deadline of %s minutes", kwargs.get("run_id", "?"),
                kwargs.get("dag_id", "?"), kwargs.get("minutes", "?"))


def _dag(snap: dict[str, Any], cfg: AirflowConfig, dag_id_: str, *, schedule: Any, doc: str,
         tags: tuple[str, ...] = (), deadline_minutes: int | None = None) -> DAG:
    """A DAG with the project's settings; `deadline_minutes`: an Airflow 3 deadline alert (the pipeline DAG's)."""
    deadline = None
    if deadline_minutes:
        deadline = DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT,
                                 interval=timedelta(minutes=deadline_minutes),
                                 callback=AsyncCallback(deadline_missed, kwargs={
                                     "dag_id": dag_id_, "minutes": deadline_minutes}))
    start = datetime(cfg.start_date.year, cfg.start_date.month, cfg.start_date.day, tzinfo=UTC)
    return DAG(dag_id_, schedule=schedule, start_date=start, catchup=cfg.catchup,
               max_active_runs=cfg.max_active_runs, max_active_tasks=cfg.max_active_tasks,
               default_args=_default_args(cfg), tags=["airduck", snap["project"], *tags, *cfg.tags],
               doc_md=doc, deadline=deadline)


# -- the pipeline DAG ---------------------------------------------------------------------------
def pipeline_dag(snap: dict[str, Any], cfg: AirflowConfig) -> DAG:
    project = snap["project"]
    steps = snap["steps"]
    doc = (f"The pipeline of the airduck project **{project}** ({len(steps)} steps), from its plan: "
           f"`airduck plan` shows the same steps. Mode: `{cfg.mode}`.")
    with _dag(snap, cfg, dag_id(snap, cfg), schedule=cfg.schedule, doc=doc,
              deadline_minutes=cfg.deadline_minutes) as dag:
        groups: dict[str, TaskGroup] = {}
        tasks: dict[str, Any] = {}
        for layer in LAYER_ORDER:
            layer_steps = [s for s in steps if s["layer"] == layer]
            if not layer_steps:
                continue
            groups[layer] = TaskGroup(layer, tooltip=f"the {layer} layer's steps")
        for step in steps:
            with groups[step["layer"]]:
                tasks[step["id"]] = _step_task(snap, cfg, step)
        for step in steps:
            for dep in step["depends_on"]:
                if dep in tasks:
                    tasks[dep] >> tasks[step["id"]]
    return dag


def _step_doc(step: dict[str, Any]) -> str:
    lines = [f"airduck step `{step['id']}`", "",
             "reads: " + (", ".join(f"`{d['name']}`" for d in step["inputs"]) or "-"),
             "writes: " + (", ".join(f"`{d['name']}`" for d in step["outputs"]) or "-")]
    if step.get("file"):
        lines.append(f"dbt model: `{step['file']}` ({step.get('materialized') or 'model'})")
    if step.get("tags"):
        lines.append("dbt tags: " + ", ".join(step["tags"]))
    return "\n\n".join(lines)


def _step_task(snap: dict[str, Any], cfg: AirflowConfig, step: dict[str, Any]):
    project = snap["project"]
    common = {"task_id": task_id(step), "outlets": _outputs(project, step), "inlets": _inputs(project, step),
              "doc_md": _step_doc(step), **_task_args(cfg, step["kind"])}
    if cfg.mode == "kubernetes":
        return pod_task(snap, cfg, step["kind"], ["run", "--step", step["id"], "-q"], step_id=step["id"],
                        layer=step["layer"], **common)
    return PythonOperator(python_callable=run_step, op_kwargs={"project": snap["root"], "step": step["id"]},
                          **common)


def _fail(exc: Exception) -> None:
    """Raise what Airflow needs: a transient airduck error is retried, any other fails the task at once."""
    from airduck.config.secrets import redact

    message = redact(str(exc))
    if getattr(exc, "transient", False):
        raise AirflowException(f"transient, will be retried: {message}") from None
    raise AirflowFailException(message) from None


def run_step(project: str, step: str) -> dict[str, Any]:
    """Local mode: run one step of the project's plan through the facade (``Lakehouse.run(step=…)``).
    Returns the step's summary (also the task's XCom): status, rows, the run id."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    try:
        with Lakehouse.open(project) as lh:
            result = lh.run(step=step, threads=1)
    except AirduckError as exc:
        _fail(exc)
    record = result.record
    out = {"run_id": record.run_id, "status": str(record.status), "snapshot_before": record.snapshot_before,
           "snapshot_after": record.snapshot_after,
           "steps": [{"table": r.table, "status": str(r.status), "rows_in": r.rows_in, "rows_out": r.rows_out,
                      "rows_quarantined": r.rows_quarantined, "rows_rejected": r.rows_rejected}
                     for r in result.steps]}
    log.info("airduck step %s: %s", step, out)
    return out


# -- kubernetes ---------------------------------------------------------------------------------
class AirduckPodOperator(KubernetesPodOperator):
    """A KubernetesPodOperator whose failed pod is retried only when `airduck` exited with
    :data:`TRANSIENT_EXIT_CODE` (a transient failure); any other failure fails the task at once."""

    template_fields = tuple(KubernetesPodOperator.template_fields)

    @staticmethod
    def exit_code(remote_pod: k8s.V1Pod | None, container: str = "base") -> int | None:
        statuses = (remote_pod.status.container_statuses if remote_pod and remote_pod.status else None) or []
        status = next((s for s in statuses if s.name == container), None)
        terminated = status.state.terminated if status and status.state else None
        return terminated.exit_code if terminated else None

    def cleanup(self, pod, remote_pod, *args: Any, **kwargs: Any) -> None:
        try:
            super().cleanup(pod, remote_pod, *args, **kwargs)
        except AirflowException as exc:
            if isinstance(exc, AirflowFailException):
                raise
            code = self.exit_code(remote_pod, self.base_container_name)
            if code == TRANSIENT_EXIT_CODE:
                raise AirflowException(f"transient failure (exit {code}), will be retried: {exc}") from exc
            raise AirflowFailException(f"terminal failure (exit {code}), not retried: {exc}") from exc


def _resources(cfg: AirflowConfig, kind: str) -> k8s.V1ResourceRequirements:
    r = cfg.resources(kind)
    return k8s.V1ResourceRequirements(requests=dict(r.requests) or None, limits=dict(r.limits) or None)


def pod_env(cfg: AirflowConfig) -> tuple[list[k8s.V1EnvVar], list[k8s.V1EnvFromSource]]:
    """The pod's environment: plain values, secretKeyRef references (never values), envFrom ConfigMaps/Secrets."""
    kube = cfg.kubernetes
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(kube.env.items())]
    env += [k8s.V1EnvVar(name=k, value_from=k8s.V1EnvVarSource(
        secret_key_ref=k8s.V1SecretKeySelector(name=ref.secret, key=ref.key, optional=False)))
        for k, ref in sorted(kube.secrets.items())]
    env_from = [k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=n)) for n in kube.config_maps]
    env_from += [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=n)) for n in kube.secret_env_from]
    return env, env_from


def pod_task(snap: dict[str, Any], cfg: AirflowConfig, kind: str, arguments: list[str], *, step_id: str,
             layer: str, task_id: str, **kwargs: Any) -> AirduckPodOperator:
    """The pod of one task: `airduck <arguments>` in the project's image."""
    kube = cfg.kubernetes
    project = snap["project"]
    env, env_from = pod_env(cfg)
    labels = {**kube.labels, "app.kubernetes.io/name": "airduck", "app.kubernetes.io/component": _label(kind),
              f"{LABEL}/project": _label(project), f"{LABEL}/step": _label(step_id.replace(":", ".")),
              f"{LABEL}/layer": _label(layer)}
    # the run: Airflow adds dag_id, task_id, run_id and try_number labels to every pod it starts
    args = (["-p", kube.project_dir] if kube.project_dir else []) + arguments
    return AirduckPodOperator(
        task_id=task_id,
        name=_label(f"airduck-{project}-{step_id}".replace("_", "-").replace(":", "-").replace(".", "-").lower()),
        namespace=kube.namespace, image=kube.image, image_pull_policy=kube.image_pull_policy,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=n) for n in kube.image_pull_secrets] or None,
        service_account_name=kube.service_account, cmds=["airduck"], arguments=args,
        env_vars=env, env_from=env_from or None, container_resources=_resources(cfg, kind),
        labels=labels, annotations={**kube.annotations, f"{LABEL}/step-id": step_id},
        node_selector=kube.node_selector or None, startup_timeout_seconds=kube.startup_timeout_seconds,
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=kube.run_as_user,
                                                  run_as_group=kube.run_as_user, fs_group=kube.run_as_user,
                                                  seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        # the same hardening as deploy/kubernetes (Pod Security `restricted`): a read-only root filesystem, with
        # emptyDirs for /tmp and the project's state folder (.airduck: dbt's target and logs, the run records)
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False, run_as_non_root=True, privileged=False, read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"])),
        volumes=[k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="4Gi")),
                 k8s.V1Volume(name="state", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi"))],
        volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
                       k8s.V1VolumeMount(name="state", mount_path=f"{(kube.project_dir or '/project').rstrip('/')}/.airduck")],
        automount_service_account_token=False,
        on_finish_action="delete_pod", get_logs=True, reattach_on_restart=True, log_pod_spec_on_failure=False,
        **kwargs)


# -- maintenance --------------------------------------------------------------------------------
def maintain_step(project: str, step: str) -> list[dict[str, Any]]:
    """Local mode: one lake maintenance step (``Lakehouse.maintain(steps=(step,))``)."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    try:
        with Lakehouse.open(project) as lh:
            done = lh.maintain(steps=(step,))
    except AirduckError as exc:
        _fail(exc)
    out = [{"step": m.name, "done": m.done, "items": len(m.items)} for m in done]
    log.info("airduck maintenance %s: %s", step, out)
    return out


def maintenance_dag(snap: dict[str, Any], cfg: AirflowConfig) -> DAG:
    doc = (f"Lake maintenance of the airduck project **{snap['project']}**: "
           + " -> ".join(cfg.maintenance.steps) + " (`airduck maintain --step …`).")
    with _dag(snap, cfg, dag_id(snap, cfg, "_maintenance"), schedule=cfg.maintenance.schedule, doc=doc,
              tags=("maintenance",)) as dag:
        previous = None
        for name in cfg.maintenance.steps:
            if cfg.mode == "kubernetes":
                op = pod_task(snap, cfg, "maintenance", ["maintain", "--step", name], step_id=f"maintain:{name}",
                              layer="lake", task_id=name, **_task_args(cfg, "maintenance"))
            else:
                op = PythonOperator(task_id=name, python_callable=maintain_step,
                                    op_kwargs={"project": snap["root"], "step": name}, **_task_args(cfg, "maintenance"))
            if previous is not None:
                previous >> op
            previous = op
    return dag


# -- data quality -------------------------------------------------------------------------------
def _quality_tables(snap: dict[str, Any]) -> list[str]:
    """The tables that have quality checks: every silver table and every gold model (dbt tests)."""
    return [d["name"] for s in snap["steps"] if s["kind"] in ("silver", "gold")
            for d in s["outputs"][:1] if d["kind"] == "lake"]


def check_quality(project: str, table: str) -> dict[str, Any]:
    """Local mode: the gate of one table. Fails (no retry) when its latest quality results have a failed check
    whose action stops the data (``fail``, a dbt test of severity error); counts the warnings."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    try:
        with Lakehouse.open(project) as lh:
            results = lh.quality(table=table)
    except AirduckError as exc:
        _fail(exc)
    failed = [q for q in results if not q.passed]
    gates = [q for q in failed if q.action in ("fail", "error")]
    summary = {"table": table, "checks": len(results), "failed": len(failed),
               "gates_failed": [f"{q.check}:{q.name}" for q in gates]}
    log.info("airduck quality %s: %s", table, summary)
    if gates:
        raise AirflowFailException(f"{table}: {len(gates)} quality gate(s) failed: "
                                   + ", ".join(summary["gates_failed"]))
    return summary


def check_freshness(project: str) -> dict[str, Any]:
    """Local mode: every table's data age against its `freshness:` policy (``Lakehouse.freshness()``); fails (no
    retry) when a table is `error`. On an airduck without freshness it says so and passes."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    try:
        with Lakehouse.open(project) as lh:
            if not hasattr(lh, "freshness"):
                log.warning("airduck: this version of airduck has no freshness checks (Lakehouse.freshness)")
                return {"available": False}
            ages = lh.freshness()
    except AirduckError as exc:
        _fail(exc)
    by_status: dict[str, list[str]] = {}
    for age in ages:
        by_status.setdefault(str(age.status), []).append(age.table)
    log.info("airduck freshness: %s", by_status)
    if by_status.get("error"):
        raise AirflowFailException("tables older than their freshness policy allows: "
                                   + ", ".join(by_status["error"]))
    return {"available": True, "status": by_status}


def quality_dag(snap: dict[str, Any], cfg: AirflowConfig) -> DAG:
    project = snap["project"]
    tables = _quality_tables(snap)
    schedule: Any = cfg.quality.schedule
    if schedule is None:  # whenever the pipeline updates one of the checked tables
        from airflow.sdk import AssetAny

        schedule = AssetAny(*(asset(project, t) for t in tables))
    doc = (f"Data quality of the airduck project **{project}**: a task per table fails when the table's latest "
           "quality results (silver expectations, casts, required columns, dbt tests) have a failed gate.")
    with _dag(snap, cfg, dag_id(snap, cfg, "_quality"), schedule=schedule, doc=doc, tags=("quality",)) as dag:
        for table in tables:
            tid = _safe(table.replace(".", "_"))
            if cfg.mode == "kubernetes":
                pod_task(snap, cfg, "quality", ["quality", "--table", table, "--gate"], step_id=f"quality:{table}",
                         layer=table.split(".")[0], task_id=tid, inlets=[asset(project, table)],
                         **_task_args(cfg, "quality"))
            else:
                PythonOperator(task_id=tid, python_callable=check_quality,
                               op_kwargs={"project": snap["root"], "table": table}, inlets=[asset(project, table)],
                               **_task_args(cfg, "quality"))
        if cfg.quality.freshness:
            if cfg.mode == "kubernetes":
                pod_task(snap, cfg, "quality", ["freshness"], step_id="quality:freshness", layer="lake",
                         task_id="freshness", **_task_args(cfg, "quality"))
            else:
                PythonOperator(task_id="freshness", python_callable=check_freshness,
                               op_kwargs={"project": snap["root"]}, **_task_args(cfg, "quality"))
    return dag
