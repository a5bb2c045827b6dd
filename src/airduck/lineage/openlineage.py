"""The OpenLineage event sink: a run's typed events -> OpenLineage RunEvents (openlineage-python v2 classes).

Per run: the parent job ``<namespace>/run`` gets START (RunStarted) and COMPLETE or FAIL (RunFinished); each
step gets START (StepStarted) then COMPLETE (StepFinished, or StepSkipped as unchanged), FAIL (StepFailed, with
the errorMessage facet) or ABORT (not run: upstream failed), as job ``<namespace>/<step id>`` whose parent run
facet is the airduck run. Datasets come from the plan (named as airduck.lineage.naming says), with facets:
schema and dataSource; on COMPLETE, the DuckLake snapshot (version) and outputStatistics (rows, bytes) of each
lake table written; the quality results as dataQualityMetrics/dataQualityAssertions (silver: input facets of
the table its rows were read from; gold: dbt tests read the built model, so facets of the model's table);
columnLineage of silver tables (their rules) and dbt models (compiled SQL); the sql job facet (silver's
generated stage query, a model's compiled SQL). Every serialised event passes through the secret redaction
before it is written or sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from airduck.config.secrets import redact
from airduck.core.model import Dataset, DatasetKind, DatasetVersion
from airduck.core.plan import Plan, Step
from airduck.events import (
    Event,
    EventSink,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepSkipped,
    StepStarted,
)
from airduck.lineage.columns import ColumnLineage, silver_columns
from airduck.lineage.config import Settings
from airduck.lineage.emit import Emitter
from airduck.lineage.naming import dataset_name, lake_namespace

PARENT_JOB = "run"
INTEGRATION = "AIRDUCK"

#: (table) -> {"columns": [(name, type)], "bytes": int | None, "rows": int | None, "files": int | None} or None
Describe = Callable[[list[str]], dict[str, dict[str, Any]]]


def _producer() -> str:
    from airduck._version import __version__

    return f"https://pypi.org/project/airduck/{__version__}/"


class OpenLineageSink(EventSink):
    def __init__(self, project: Any, settings: Settings, plan: Callable[[], Plan], describe: Describe | None = None,
                 emitter: Emitter | None = None) -> None:
        from openlineage.client.event_v2 import set_producer

        self.project, self.settings = project, settings
        self.namespace = settings.namespace
        self.lake_ns = lake_namespace(project)
        self._plan_fn, self._plan = plan, None
        self.describe = describe
        self.emitter = emitter or Emitter(settings)
        self.producer = _producer()
        set_producer(self.producer)
        self._runs: dict[str | None, str] = {}  # airduck run id -> OpenLineage run uuid
        self._steps: dict[tuple[str | None, str], str] = {}  # (run id, step id) -> uuid
        self._started: dict[tuple[str | None, str], tuple[Event, list, list]] = {}
        self._gold_sql: dict[str, str] | None = None
        self._run_id: str | None = None
        self._lock = threading.RLock()

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        with self._lock:
            if self._plan is None:
                try:
                    self._plan = self._plan_fn()
                except Exception:  # an invalid project: its events name what the airduck events say
                    self._plan = Plan([])
            return self._plan

    def _step(self, step_id: str) -> Step | None:
        return self.plan._by_id.get(step_id)

    def _send(self, event: Any) -> None:
        from openlineage.client.serde import Serde

        self.emitter.emit(redact(Serde.to_json(event)))

    def _ds(self, d: Dataset) -> tuple[str, str]:
        return dataset_name(d, self.lake_ns)

    def _uuid(self, when: datetime) -> str:
        from openlineage.client.uuid import generate_new_uuid

        return str(generate_new_uuid(when))

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_started(event)
        elif isinstance(event, StepStarted):
            self._step_started(event)
        elif isinstance(event, StepFinished):
            self._step_done(event, "COMPLETE")
        elif isinstance(event, StepFailed):
            self._step_done(event, "FAIL")
        elif isinstance(event, StepSkipped):
            self._step_done(event, "ABORT" if event.upstream_failed else "COMPLETE")
        elif isinstance(event, RunFinished):
            self._run_finished(event)

    # -- the run (the parent job) ---------------------------------------------------------------------
    def _run_facets(self, event: Event) -> dict[str, Any]:
        from openlineage.client.facet_v2 import processing_engine_run

        from airduck._version import __version__

        try:
            from openlineage.client import __version__ as ol_version
        except ImportError:  # pragma: no cover
            ol_version = None
        return {"processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=__version__, name="airduck", openlineageAdapterVersion=ol_version)}

    def _job(self, name: str, job_type: str, sql: str | None = None) -> Any:
        from openlineage.client.event_v2 import Job
        from openlineage.client.facet_v2 import job_type_job, sql_job

        facets: dict[str, Any] = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH",
                                                                           integration=INTEGRATION, jobType=job_type)}
        if sql:
            facets["sql"] = sql_job.SQLJobFacet(query=sql, dialect="duckdb")
        return Job(namespace=self.namespace, name=name, facets=facets)

    def _run_started(self, event: RunStarted) -> None:
        from openlineage.client.event_v2 import Run, RunEvent, RunState

        with self._lock:
            uid = self._runs.setdefault(event.run_id, self._uuid(event.time))
        self._plan = None  # a new run reads the plan (and its dbt SQL) afresh
        self._gold_sql = None
        self._run_id = event.run_id
        _ = self.plan  # read now, before the steps' threads need it
        self._send(RunEvent(eventType=RunState.START, eventTime=event.time.isoformat(), producer=self.producer,
                            run=Run(runId=uid, facets=self._run_facets(event)), job=self._job(PARENT_JOB, "RUN")))

    def _run_finished(self, event: RunFinished) -> None:
        from openlineage.client.event_v2 import Run, RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run

        if event.run_id not in self._runs:  # failed before it started: a START first, so the run has its pair
            self._run_started(RunStarted(run_id=event.run_id, time=event.time))
        with self._lock:
            uid = self._runs.pop(event.run_id)
        facets = self._run_facets(event)
        failed = str(event.status) == "failed"
        if failed:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=redact(event.error or f"{event.steps_failed} step(s) failed"), programmingLanguage="python")
        try:
            self._send(RunEvent(eventType=RunState.FAIL if failed else RunState.COMPLETE,
                                eventTime=event.time.isoformat(), producer=self.producer,
                                run=Run(runId=uid, facets=facets), job=self._job(PARENT_JOB, "RUN")))
        finally:
            self.emitter.close()

    # -- steps -----------------------------------------------------------------------------------
    def _parent(self, run_id: str | None) -> Any:
        from openlineage.client.facet_v2 import parent_run

        uid = self._runs.get(run_id)
        if uid is None:
            return None
        return parent_run.ParentRunFacet(run=parent_run.Run(runId=uid),
                                         job=parent_run.Job(namespace=self.namespace, name=PARENT_JOB),
                                         root=parent_run.Root(run=parent_run.RootRun(runId=uid),
                                                              job=parent_run.RootJob(namespace=self.namespace,
                                                                                     name=PARENT_JOB)))

    def _step_run(self, run_id: str | None, step_id: str, when: datetime, facets: dict[str, Any] | None = None) -> Any:
        from openlineage.client.event_v2 import Run

        with self._lock:
            uid = self._steps.setdefault((run_id, step_id), self._uuid(when))
        facets = dict(facets or {})
        parent = self._parent(run_id)
        if parent is not None:
            facets["parent"] = parent
        return Run(runId=uid, facets=facets)

    def _base_facets(self, d: Dataset) -> dict[str, Any]:
        from openlineage.client.facet_v2 import datasource_dataset

        ns, _ = self._ds(d)
        return {"dataSource": datasource_dataset.DatasourceDatasetFacet(name=ns, uri=ns)}

    def _step_started(self, event: StepStarted) -> None:
        from openlineage.client.event_v2 import RunEvent, RunState

        step = self._step(event.step_id)
        inputs = self._inputs(step, list(event.inputs), [])
        outputs = self._outputs(step, [], done=False)
        with self._lock:
            self._started[(event.run_id, event.step_id)] = (event, inputs, outputs)
        self._send(RunEvent(eventType=RunState.START, eventTime=event.time.isoformat(), producer=self.producer,
                            run=self._step_run(event.run_id, event.step_id, event.time),
                            job=self._job(event.step_id, event.kind.upper()), inputs=inputs, outputs=outputs))

    def _step_done(self, event: StepFinished | StepFailed | StepSkipped, state: str) -> None:
        from openlineage.client.event_v2 import RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run

        key = (event.run_id, event.step_id)
        step = self._step(event.step_id)
        with self._lock:
            started = self._started.pop(key, None)
        if started is None:  # not started (upstream failed): a START first, so every run has its pair
            self._step_started(StepStarted(run_id=event.run_id, step_id=event.step_id, kind=event.kind,
                                           time=event.time))
            with self._lock:
                self._started.pop(key, None)
        facets: dict[str, Any] = {}
        if isinstance(event, StepFailed):
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=redact(f"{event.error_type}: {event.error}"), programmingLanguage="python")
        versions_in = list(event.inputs) if isinstance(event, StepFinished) else []
        versions_out = list(event.outputs) if isinstance(event, StepFinished) else []
        quality = list(getattr(event, "quality", ()) or ())
        inputs = self._inputs(step, versions_in, quality)
        outputs = self._outputs(step, versions_out, done=isinstance(event, StepFinished), quality=quality,
                                rows=event.rows_out if isinstance(event, StepFinished) else None)
        sql = self._sql(step, event)
        self._send(RunEvent(eventType=getattr(RunState, state), eventTime=event.time.isoformat(),
                            producer=self.producer, run=self._step_run(event.run_id, event.step_id, event.time, facets),
                            job=self._job(event.step_id, event.kind.upper(), sql), inputs=inputs, outputs=outputs))
        with self._lock:
            self._steps.pop(key, None)

    def _sql(self, step: Step | None, event: Event) -> str | None:
        if isinstance(event, StepFinished) and getattr(event, "sql", None):
            return event.sql
        if step is not None and step.kind.value == "gold":
            return self._gold_compiled(event.run_id).get(step.name)
        return None

    def _gold_compiled(self, run_id: str | None) -> dict[str, str]:
        if self._gold_sql is None:
            from airduck.lineage.dbt import compiled_sql

            path = Path(self.project.state_dir) / "runs" / str(run_id) / "dbt" / "target" / "manifest.json"
            self._gold_sql = compiled_sql(self.project, path if path.is_file() else None)
        return self._gold_sql

    # -- datasets --------------------------------------------------------------------------------
    def _inputs(self, step: Step | None, versions: list[DatasetVersion], quality: list) -> list[Any]:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import dataset_version_dataset

        seen = {v.dataset: v for v in versions}
        datasets = list(step.inputs) if step is not None else [v.dataset for v in versions]
        for v in versions:
            if v.dataset not in datasets:
                datasets.append(v.dataset)
        out = []
        for i, d in enumerate(datasets):
            ns, name = self._ds(d)
            facets = self._base_facets(d)
            v = seen.get(d)
            if v is not None and v.snapshot is not None:
                facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(v.snapshot))
            input_facets = self._quality_facets(quality, for_silver=True) if i == 0 and step is not None \
                and step.kind.value == "silver" else {}
            out.append(InputDataset(namespace=ns, name=name, facets=facets, inputFacets=input_facets))
        return out

    def _outputs(self, step: Step | None, versions: list[DatasetVersion], *, done: bool,
                 quality: list | None = None, rows: int | None = None) -> list[Any]:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import (
            dataset_version_dataset,
            output_statistics_output_dataset,
            schema_dataset,
        )

        seen = {v.dataset: v for v in versions}
        datasets = list(step.outputs) if step is not None else [v.dataset for v in versions]
        lake = [d.name for d in datasets if d.kind == DatasetKind.LAKE]
        described: dict[str, dict[str, Any]] = {}
        if done and self.describe is not None and lake:
            try:
                described = self.describe(lake) or {}
            except Exception:
                described = {}
        columns = self._column_lineage(step) if done and step is not None else {}
        out = []
        for d in datasets:
            ns, name = self._ds(d)
            facets = self._base_facets(d)
            out_facets: dict[str, Any] = {}
            info = described.get(d.name) if d.kind == DatasetKind.LAKE else None
            if info and info.get("columns"):
                facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
                    schema_dataset.SchemaDatasetFacetFields(name=c, type=t) for c, t in info["columns"]])
            v = seen.get(d)
            snap = v.snapshot if v is not None else None  # the commit that wrote it (not the lake's latest)
            if done and snap is not None:
                facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(snap))
            if done and ((v is not None and v.rows is not None) or info):
                out_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=v.rows if v is not None and v.rows is not None else (info or {}).get("rows"),
                    size=(info or {}).get("bytes"), fileCount=(info or {}).get("files"))
            elif done and rows is not None and d.kind in (DatasetKind.POSTGRES_MART, DatasetKind.EXPORT):
                out_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=rows)
            if d.kind == DatasetKind.LAKE and d.name in columns:
                facets["columnLineage"] = columns[d.name]
            if quality and step is not None and step.kind.value == "gold" and d == step.outputs[0]:
                facets.update(self._quality_facets(quality, for_silver=False))
            out.append(OutputDataset(namespace=ns, name=name, facets=facets, outputFacets=out_facets))
        return out

    def _quality_facets(self, quality: list, *, for_silver: bool) -> dict[str, Any]:
        from openlineage.client.facet_v2 import data_quality_assertions_dataset as dqa
        from openlineage.client.facet_v2 import data_quality_metrics_input_dataset as dqm

        if not quality:
            return {}
        assertions = []
        column_metrics: dict[str, Any] = {}
        rows = None
        for q in quality:
            column = q.name if q.check in ("cast", "required") else None
            assertions.append(dqa.Assertion(
                assertion=f"{q.check}:{q.name}", success=bool(q.passed), column=column, name=q.name,
                severity={"warn": "warn", "drop": "error", "fail": "error"}.get(str(q.action), str(q.action)),
                description=redact(q.detail)[:1000] if q.detail else None,
                expected="0 failing rows", actual=f"{q.rows_failing} failing rows"))
            if q.rows_checked is not None:
                rows = max(rows or 0, q.rows_checked)
            if q.check == "required" and column:
                column_metrics[column] = dqm.ColumnMetrics(nullCount=q.rows_failing, count=q.rows_checked)
        return {"dataQualityAssertions": dqa.DataQualityAssertionsDatasetFacet(assertions=assertions),
                "dataQualityMetrics": dqm.DataQualityMetricsInputDatasetFacet(columnMetrics=column_metrics,
                                                                              rowCount=rows)}

    def _column_lineage(self, step: Step) -> dict[str, Any]:
        cols: list[ColumnLineage] = []
        if step.kind.value == "silver":
            rule = self.project.config.silver.get(step.name)
            if rule is not None and step.inputs:
                cols = silver_columns(step.name, rule, step.inputs[0].name)
        elif step.kind.value == "gold":
            sql = self._gold_compiled(self._run_id).get(step.name)
            if sql and step.outputs:
                from airduck.lineage.dbt import model_columns

                try:
                    cols = model_columns(step.outputs[0].name, sql)
                except Exception:
                    cols = []
        if not cols:
            return {}
        return {cols[0].table: column_lineage_facet(cols, self.lake_ns)}


def column_lineage_facet(cols: list[ColumnLineage], lake_ns: str) -> Any:
    from openlineage.client.facet_v2 import column_lineage_dataset as cl

    fields = {}
    for c in cols:
        fields[c.column] = cl.Fields(
            inputFields=[cl.InputField(namespace=lake_ns, name=s.table, field=s.column, transformations=[
                cl.Transformation(type=s.type, subtype=s.subtype, description=s.description or None)])
                for s in c.sources],
            transformationDescription=c.transformation + (f": {c.sql}" if c.sql else ""),
            transformationType="IDENTITY" if c.transformation == "identity" else "TRANSFORMATION")
    return cl.ColumnLineageDatasetFacet(fields=fields)
