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

Atomic DAG runs (``airflow.atomic``, default ``run.atomic``): write-audit-publish across the tasks of one DAG run.
``branch.create`` forks the run's branch (:func:`airduck.text.run_branch` of the run id) from main, every step task
runs on it (``AIRDUCK_BRANCH``), ``branch.audit`` runs the ``audit:`` queries there, ``branch.merge`` merges it into
main in one commit and deletes it; the serve and export steps run after the merge, from main. Each of these tasks
can be retried: the branch of the run is reused, a merge already made is not made again. A failure keeps the
branch, and the task's message names it.
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
from airduck.text import run_branch

log = logging.getLogger("airduck.airflow")

LAYER_ORDER = ("bronze", "silver", "gold", "serve")
LABEL = "airduck.io"
#: the branch an atomic DAG run writes to, rendered at run time from its run id (a DAG macro)
BRANCH = "{{ airduck_run_branch(run_id) }}"
TARGET = "main"


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
         tags: tuple[str, ...] = (), deadline_minutes: int | None = None, **kwargs: Any) -> DAG:
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
               doc_md=doc, deadline=deadline, **kwargs)


# -- the pipeline DAG ---------------------------------------------------------------------------
def _serving(step: dict[str, Any]) -> bool:
    """A serve or export step: in an atomic DAG run it runs after the merge, from main."""
    return step["kind"] in ("serve", "export")


def pipeline_dag(snap: dict[str, Any], cfg: AirflowConfig) -> DAG:
    project = snap["project"]
    steps = snap["steps"]
    atomic = bool(cfg.atomic)
    doc = (f"The pipeline of the airduck project **{project}** ({len(steps)} steps), from its plan: "
           f"`airduck plan` shows the same steps. Mode: `{cfg.mode}`.")
    if atomic:
        doc += (f" Atomic (write-audit-publish): the run's steps write to its branch (`{BRANCH}`, "
                f"`run-<run id>`), audited, then merged into {TARGET} in one commit; serve and export run after.")
    macros = {"airduck_run_branch": run_branch} if atomic else None
    with _dag(snap, cfg, dag_id(snap, cfg), schedule=cfg.schedule, doc=doc,
              deadline_minutes=cfg.deadline_minutes, user_defined_macros=macros) as dag:
        groups: dict[str, TaskGroup] = {}
        tasks: dict[str, Any] = {}
        for layer in LAYER_ORDER:
            layer_steps = [s for s in steps if s["layer"] == layer]
            if not layer_steps:
                continue
            groups[layer] = TaskGroup(layer, tooltip=f"the {layer} layer's steps")
        for step in steps:
            with groups[step["layer"]]:
                tasks[step["id"]] = _step_task(snap, cfg, step, branch=BRANCH if atomic and not _serving(step)
                                               else TARGET if atomic else None)
        for step in steps:
            for dep in step["depends_on"]:
                if dep in tasks:
                    tasks[dep] >> tasks[step["id"]]
        if atomic:
            _wire_branch(snap, cfg, steps, tasks)
    return dag


def _wire_branch(snap: dict[str, Any], cfg: AirflowConfig, steps: list[dict[str, Any]], tasks: dict[str, Any]) -> None:
    """The tasks of an atomic DAG run: branch.create -> the lake's steps -> branch.audit -> branch.merge -> serve."""
    lake = [s for s in steps if not _serving(s)]
    published = list({a.uri: a for s in lake for a in _outputs(snap["project"], s)}.values())
    with TaskGroup("branch", tooltip="the run's branch: fork it from main, audit it, merge it into main"):
        create, audit = _branch_task(snap, cfg, "create"), _branch_task(snap, cfg, "audit")
        merge = _branch_task(snap, cfg, "merge", outlets=published)
    ids = {s["id"] for s in lake}
    upstream = {d for s in lake for d in s["depends_on"] if d in ids}
    for s in lake:
        if not any(d in ids for d in s["depends_on"]):
            create >> tasks[s["id"]]
        if s["id"] not in upstream:
            tasks[s["id"]] >> audit
    if not lake:
        create >> audit
    create >> audit >> merge
    for s in steps:
        if _serving(s):
            merge >> tasks[s["id"]]


def _branch_task(snap: dict[str, Any], cfg: AirflowConfig, what: str, outlets: list[Asset] | None = None):
    """`branch.create`, `branch.audit` or `branch.merge` of an atomic DAG run (retries: safe, see the module);
    `outlets`: the merge's, every table the run's steps write (they reach main with it)."""
    docs = {"create": f"fork the run's branch `{BRANCH}` from {TARGET} (reused when it exists: a retry)",
            "audit": "the `audit:` queries of airduck.yml, on the run's branch: each must return no rows",
            "merge": f"merge the run's branch into {TARGET} in one commit and delete it (a retry after the merge: "
                     "nothing to do)"}
    kwargs = {"task_id": what, "doc_md": docs[what], "outlets": outlets or [], **_task_args(cfg, "branch")}
    if cfg.mode == "kubernetes":
        arguments = {"create": ["branch", "create", BRANCH, "--from", TARGET, "--if-missing"],
                     "audit": ["audit"],
                     "merge": ["merge", BRANCH, "--into", TARGET, "--delete"]}[what]
        return pod_task(snap, cfg, "branch", arguments, step_id=f"branch:{what}", layer="lake",
                        branch=BRANCH if what == "audit" else None, keeps=None if what == "create" else BRANCH,
                        **kwargs)
    return PythonOperator(python_callable={"create": create_branch, "audit": audit_branch,
                                           "merge": merge_branch}[what],
                          op_kwargs={"project": snap["root"], "branch": BRANCH, "run_id": "{{ run_id }}"}, **kwargs)


def _step_doc(step: dict[str, Any]) -> str:
    lines = [f"airduck step `{step['id']}`", "",
             "reads: " + (", ".join(f"`{d['name']}`" for d in step["inputs"]) or "-"),
             "writes: " + (", ".join(f"`{d['name']}`" for d in step["outputs"]) or "-")]
    if step.get("file"):
        lines.append(f"dbt model: `{step['file']}` ({step.get('materialized') or 'model'})")
    if step.get("tags"):
        lines.append("dbt tags: " + ", ".join(step["tags"]))
    return "\n\n".join(lines)


def _step_task(snap: dict[str, Any], cfg: AirflowConfig, step: dict[str, Any], branch: str | None = None):
    """The task of a step; `branch` (an atomic DAG run): the branch it runs on, the run's or main."""
    project = snap["project"]
    # on the run's branch a step's tables change on main only with the merge: the merge task has their outlets
    outlets = [] if branch not in (None, TARGET) else _outputs(project, step)
    common = {"task_id": task_id(step), "outlets": outlets, "inlets": _inputs(project, step),
              "doc_md": _step_doc(step), **_task_args(cfg, step["kind"])}
    if cfg.mode == "kubernetes":
        arguments = ["run", "--step", step["id"], *(["--no-atomic"] if branch else []), "-q"]
        return pod_task(snap, cfg, step["kind"], arguments, step_id=step["id"], layer=step["layer"],
                        branch=branch if branch != TARGET else None, **common)
    kwargs = {"project": snap["root"], "step": step["id"]}
    if branch:
        kwargs["branch"] = branch
    return PythonOperator(python_callable=run_step, op_kwargs=kwargs, **common)


def _fail(exc: Exception, branch: str | None = None, what: str = "the failed run") -> None:
    """Raise what Airflow needs: a transient airduck error is retried, any other fails the task at once.
    `branch`: the run's branch, kept (the message says so unless it does already)."""
    from airduck.config.secrets import redact
    from airduck.pipeline.atomic import kept

    message = redact(str(exc))
    if branch and branch not in message:
        message = kept(message, branch, what)
    if getattr(exc, "transient", False):
        raise AirflowException(f"transient, will be retried: {message}") from None
    raise AirflowFailException(message) from None


def run_step(project: str, step: str, branch: str | None = None) -> dict[str, Any]:
    """Local mode: run one step of the project's plan through the facade (``Lakehouse.run(step=…)``); `branch` (an
    atomic DAG run): on that branch of the lake, not atomic by itself. Returns the step's summary (also the task's
    XCom): status, rows, the run id."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    on_run_branch = branch not in (None, TARGET)
    try:
        with Lakehouse.open(project, branch=branch) as lh:
            result = lh.run(step=step, threads=1, atomic=False if branch else None)
    except AirduckError as exc:
        _fail(exc, branch if on_run_branch else None)
    record = result.record
    out = {"run_id": record.run_id, "status": str(record.status), "snapshot_before": record.snapshot_before,
           "snapshot_after": record.snapshot_after,
           "steps": [{"table": r.table, "status": str(r.status), "rows_in": r.rows_in, "rows_out": r.rows_out,
                      "rows_quarantined": r.rows_quarantined, "rows_rejected": r.rows_rejected}
                     for r in result.steps]}
    if branch:
        out["branch"] = branch
    log.info("airduck step %s: %s", step, out)
    return out


def create_branch(project: str, branch: str, run_id: str) -> dict[str, Any]:
    """Local mode, `branch.create` of an atomic DAG run: fork `branch` from main, or reuse it (a retry)."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    try:
        with Lakehouse.open(project, branch=TARGET) as lh:
            b = lh.create_branch(branch, TARGET, if_missing=True)
    except AirduckError as exc:
        _fail(exc)
    out = {"branch": b.name, "base": b.base, "fork_snapshot": b.fork_snapshot, "base_snapshot": b.base_snapshot,
           "run_id": run_id}
    log.info("airduck branch of DAG run %s: %s", run_id, out)
    return out


def audit_branch(project: str, branch: str, run_id: str) -> dict[str, Any]:
    """Local mode, `branch.audit`: the `audit:` queries on the run's branch; any that returns rows fails the task
    (no retry) and the branch is kept."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    try:
        with Lakehouse.open(project, branch=branch) as lh:
            queries = len(lh.project.config.audit)
            failed = lh.audit()
    except AirduckError as exc:
        _fail(exc, branch, "the audited data")
    if failed:
        from airduck.pipeline.atomic import kept

        raise AirflowFailException(kept(f"the audit of DAG run {run_id} failed: {'; '.join(failed)}", branch,
                                        "the audited data"))
    out = {"branch": branch, "queries": queries, "failed": []}
    log.info("airduck audit of %s: %s", branch, out)
    return out


def merge_branch(project: str, branch: str, run_id: str) -> dict[str, Any]:
    """Local mode, `branch.merge`: merge the run's branch into main in one commit and delete it; a retry after
    the merge merges nothing again (``already``). A conflict fails the task (no retry) and keeps the branch."""
    from airduck.errors import AirduckError
    from airduck.lakehouse import Lakehouse

    try:
        with Lakehouse.open(project, branch=TARGET) as lh:
            merged = lh.merge(branch, TARGET, delete=True, airflow_run=run_id,
                              message=f"Airflow DAG run {run_id} (branch {branch}) into {TARGET}")
    except AirduckError as exc:
        _fail(exc, branch, "the run")
    out = {"branch": branch, "into": merged.into, "snapshot_id": merged.snapshot_id, "already": merged.already,
           "tables": [t.table for t in merged.tables]}
    log.info("airduck merge of %s: %s", branch, out)
    return out


# -- kubernetes ---------------------------------------------------------------------------------
class AirduckPodOperator(KubernetesPodOperator):
    """A KubernetesPodOperator whose failed pod is retried only when `airduck` exited with
    :data:`TRANSIENT_EXIT_CODE` (a transient failure); any other failure fails the task at once."""

    template_fields = (*KubernetesPodOperator.template_fields, "airduck_branch")

    def __init__(self, *args: Any, airduck_branch: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the branch of an atomic DAG run a failure of this task keeps (named in the failure; templated)
        self.airduck_branch = airduck_branch

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
            message = f"terminal failure (exit {code}), not retried: {exc}"
            if self.airduck_branch:
                from airduck.pipeline.atomic import kept

                message = kept(message, self.airduck_branch, "the failed task's run")
            raise AirflowFailException(message) from exc


def _resources(cfg: AirflowConfig, kind: str) -> k8s.V1ResourceRequirements:
    r = cfg.resources(kind)
    return k8s.V1ResourceRequirements(requests=dict(r.requests) or None, limits=dict(r.limits) or None)


def pod_env(cfg: AirflowConfig, branch: str | None = None) -> tuple[list[k8s.V1EnvVar], list[k8s.V1EnvFromSource]]:
    """The pod's environment: plain values, secretKeyRef references (never values), envFrom ConfigMaps/Secrets;
    `branch`: AIRDUCK_BRANCH, the branch of the lake the pod's `airduck` reads and writes."""
    kube = cfg.kubernetes
    plain = {**kube.env, **({"AIRDUCK_BRANCH": branch} if branch else {})}
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(plain.items())]
    env += [k8s.V1EnvVar(name=k, value_from=k8s.V1EnvVarSource(
        secret_key_ref=k8s.V1SecretKeySelector(name=ref.secret, key=ref.key, optional=False)))
        for k, ref in sorted(kube.secrets.items())]
    env_from = [k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=n)) for n in kube.config_maps]
    env_from += [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=n)) for n in kube.secret_env_from]
    return env, env_from


def pod_task(snap: dict[str, Any], cfg: AirflowConfig, kind: str, arguments: list[str], *, step_id: str,
             layer: str, task_id: str, branch: str | None = None, keeps: str | None = None,
             **kwargs: Any) -> AirduckPodOperator:
    """The pod of one task: `airduck <arguments>` in the project's image; `branch`: on that branch of the lake
    (AIRDUCK_BRANCH); `keeps`: the run's branch a failure keeps (default `branch`), named in the failure."""
    kube = cfg.kubernetes
    project = snap["project"]
    env, env_from = pod_env(cfg, branch)
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
        # a restarted worker reattaches to the running pod: the provider's default (`durable` on Airflow 3.3+,
        # `reattach_on_restart` below it, which is deprecated: not passed)
        on_finish_action="delete_pod", get_logs=True, log_pod_spec_on_failure=False,
        airduck_branch=keeps or branch, **kwargs)


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
