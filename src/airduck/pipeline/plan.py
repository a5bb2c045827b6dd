"""The plan of a project: airduck.yml + the dbt graph -> a DAG of steps with their datasets.

Steps (ids):
- ``ingest:<source>``  a source -> ``bronze.<source>`` and ``bronze.<source>__rejects`` (+ its incremental state)
- ``silver:<table>``   its bronze/silver input and lookup tables -> ``silver.<table>`` and its quarantine
- ``gold:<model>``     one per dbt model or seed -> ``gold.<alias>``, with dbt's dependencies
- ``serve:<name>``     a gold table -> a PostgreSQL mart (``serve.postgres.tables``)
- ``export:<name>``    a gold table -> Parquet/Delta files (``serve.export.tables``)

A step depends on the step that writes each lake table it reads. The runner executes the plan; `airduck plan`
prints it; the Airflow DAG factory, lineage and the API read the same object.
"""

from __future__ import annotations

from typing import Any

from airduck.config.project import Project
from airduck.core.model import Dataset, DatasetKind, StepKind
from airduck.core.plan import Plan, Step, step_id
from airduck.text import safe_url

QUARANTINE = "__quarantine"
REJECTS = "__rejects"


def needs_gold(select: list[str] | None) -> bool:
    """Whether selecting `select` may involve gold steps (if not, the plan is built without reading dbt's graph:
    `airduck run -s bronze` or `--step ingest:orders` start no dbt, as before plans)."""
    items = [i.strip() for raw in (select or []) for i in raw.split(",") if i.strip()]
    if not items:
        return True
    plain = ("ingest", "bronze", "silver", "ingest:", "bronze.", "silver:", "silver.")
    return any(i.endswith("+") or not (i.lstrip("+") in plain[:3] or i.lstrip("+").startswith(plain[3:]))
               for i in items)


def build_plan(project: Project, *, graph: Any = None, gold: bool = True) -> Plan:
    """The whole plan of `project`. `graph`: a gold.manifest.GoldGraph to use instead of reading the dbt project
    (whose graph is cached per version; reading it may run `dbt parse` once). `gold=False` leaves gold, serve and
    export steps out (for selections that cannot reach them, see :func:`needs_gold`)."""
    cfg = project.config
    steps: list[Step] = []
    for name, source in cfg.sources.items():
        steps.append(Step(step_id(StepKind.INGEST, name), StepKind.INGEST, name,
                          inputs=(_source_dataset(project, name, source),),
                          outputs=(Dataset.lake(f"bronze.{name}"), Dataset.lake(f"bronze.{name}{REJECTS}")),
                          meta=(("source_type", source.type),)))
    steps += _silver_steps(project)
    if not gold:
        return Plan(_wire(steps))
    if cfg.gold.dbt_project:
        if graph is None:
            from airduck.gold.manifest import load_graph

            graph = load_graph(project)
        steps += _gold_steps(graph)
    steps += _serve_steps(project)
    return Plan(_wire(steps))


def _wire(steps: list[Step]) -> list[Step]:
    """Each step depends on the step that writes each lake table it reads."""
    writers = {str(d): s.id for s in steps for d in s.outputs if d.kind == DatasetKind.LAKE}
    wired = []
    for s in steps:
        deps = tuple(dict.fromkeys(writers[str(d)] for d in s.inputs if str(d) in writers and writers[str(d)] != s.id))
        wired.append(Step(s.id, s.kind, s.name, s.inputs, s.outputs, tuple(dict.fromkeys((*s.depends_on, *deps))),
                          s.meta))
    return wired


def _silver_steps(project: Project) -> list[Step]:
    from airduck.silver.order import silver_order
    from airduck.silver.rules import Locator, source_table

    cfg = project.config
    loc = Locator(project)
    out = []
    for name in silver_order(cfg.silver):
        rule = cfg.silver[name]
        source = source_table(name, rule, loc, set(cfg.sources), set(cfg.silver))
        inputs = [Dataset.lake(source.qualified)]
        for lookup in rule.lookups:
            table = lookup.table.strip().replace('"', "")
            if "." not in table:
                table = f"silver.{table}"
            inputs.append(Dataset.lake(table))
        out.append(Step(step_id(StepKind.SILVER, name), StepKind.SILVER, name, inputs=tuple(dict.fromkeys(inputs)),
                        outputs=(Dataset.lake(f"silver.{name}"), Dataset.lake(f"silver.{name}{QUARANTINE}")),
                        meta=(("mode", rule.mode),)))
    return out


def _gold_steps(graph: Any) -> list[Step]:
    nodes = graph.nodes
    out = []
    for node in sorted(nodes.values(), key=lambda n: n.name):
        inputs = [Dataset.lake(t) for t in node.sources] + [Dataset.lake(f"gold.{nodes[r].alias}")
                                                            for r in node.refs if r in nodes]
        out.append(Step(step_id(StepKind.GOLD, node.name), StepKind.GOLD, node.name, inputs=tuple(inputs),
                        outputs=(Dataset.lake(f"gold.{node.alias}"),),
                        meta=(("unique_id", node.unique_id), ("resource_type", node.resource_type),
                              ("materialized", node.materialized), ("tags", node.tags), ("file", node.file))))
    return out


def _gold_table(table: str) -> str:
    table = table.strip().replace('"', "")
    return table if "." in table else f"gold.{table}"


def _serve_steps(project: Project) -> list[Step]:
    serve = project.config.serve
    out = []
    if serve.postgres:
        where = _pg_location(serve.postgres.dsn)
        for t in serve.postgres.tables:
            source = _gold_table(t.table)
            name = t.name or source.split(".", 1)[1]
            out.append(Step(step_id(StepKind.SERVE, name), StepKind.SERVE, name, inputs=(Dataset.lake(source),),
                            outputs=(Dataset(DatasetKind.POSTGRES_MART, f"{serve.postgres.schema_}.{name}", where),),
                            meta=(("table", source),)))
    if serve.export:
        folder = project.resolve(serve.export.path)
        for t in serve.export.tables:
            source = _gold_table(t.table)
            name = t.name or source.split(".", 1)[1]
            out.append(Step(step_id(StepKind.EXPORT, name), StepKind.EXPORT, name, inputs=(Dataset.lake(source),),
                            outputs=tuple(Dataset(DatasetKind.EXPORT, f"{name}.{fmt}", safe_url(folder))
                                          for fmt in serve.export.format),
                            meta=(("table", source), ("formats", tuple(serve.export.format)))))
    return out


def _source_dataset(project: Project, name: str, source: Any) -> Dataset:
    if source.type == "files":
        path = source.path
        return Dataset(DatasetKind.FILES, path, safe_url(project.resolve(path.rsplit("/", 1)[0] + "/"))
                       if "/" in path else str(project.root))
    if source.type == "postgres":
        what = source.table or f"query:{name}"
        return Dataset(DatasetKind.POSTGRES, what, _pg_location(source.dsn))
    return Dataset(DatasetKind.HTTP, safe_url(source.url).split("?", 1)[0], None)


def _pg_location(dsn: str | None) -> str | None:
    """``postgres://host:port/dbname`` of a DSN (URL or key=value), with no user or password."""
    if not dsn:
        return None
    try:
        from psycopg.conninfo import conninfo_to_dict

        d = conninfo_to_dict(dsn.removeprefix("postgresql:").removeprefix("postgres:")
                             if not dsn.startswith(("postgresql://", "postgres://")) else dsn)
    except Exception:
        return None
    host = str(d.get("host") or "localhost")
    if host.startswith("/"):
        host = "localhost"
    return f"postgres://{host}:{d.get('port') or 5432}/{d.get('dbname') or ''}"
