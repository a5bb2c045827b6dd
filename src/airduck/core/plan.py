"""A plan: the DAG of a project's steps, with the datasets each reads and writes. No I/O.

Built by airduck.pipeline.plan from airduck.yml and the dbt manifest; read by the runner, `airduck plan`,
and (later) the Airflow DAG factory, lineage and the API. Selection uses dbt's graph operators:
``+silver.orders`` (with everything upstream), ``silver.orders+`` (with everything downstream).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from airduck.core.model import Dataset, StepKind
from airduck.errors import ConfigError


@dataclass(frozen=True)
class Step:
    """One unit of work that commits its outputs in one transaction."""

    id: str  # "<kind>:<name>", e.g. ingest:orders, silver:orders, gold:orders_by_day, serve:postgres
    kind: StepKind
    name: str  # the source, silver table, dbt model, or serve target the step is about
    inputs: tuple[Dataset, ...] = ()
    outputs: tuple[Dataset, ...] = ()
    depends_on: tuple[str, ...] = ()  # ids of upstream steps
    #: extra facts a runner needs (e.g. a dbt model's unique_id and materialisation, a source's type)
    meta: tuple[tuple[str, Any], ...] = ()

    @property
    def layer(self) -> str:
        return self.kind.layer.value

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.meta).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind.value, "name": self.name,
                "inputs": [str(d) for d in self.inputs], "outputs": [str(d) for d in self.outputs],
                "depends_on": list(self.depends_on), "datasets": {
                    "inputs": [d.to_dict() for d in self.inputs], "outputs": [d.to_dict() for d in self.outputs]}}


def step_id(kind: StepKind | str, name: str) -> str:
    return f"{StepKind(kind).value}:{name}"


@dataclass
class Plan:
    """Steps in a topological order (every step after the steps it depends on)."""

    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {s.id: s for s in self.steps}
        for s in self.steps:
            for dep in s.depends_on:
                if dep not in self._by_id:
                    raise ConfigError(f"plan: step {s.id} depends on {dep}, which is not a step of the plan")
        self.steps = self._topological(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __contains__(self, item: object) -> bool:
        return item in self._by_id

    def __getitem__(self, step_id: str) -> Step:
        try:
            return self._by_id[step_id]
        except KeyError:
            raise ConfigError(f"no step {step_id!r} in the plan",
                              hint="see `airduck plan` for the steps: " + ", ".join(list(self._by_id)[:12])) from None

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.steps]

    def of_kind(self, kind: StepKind) -> list[Step]:
        return [s for s in self.steps if s.kind == kind]

    def downstream_of(self, ids: Iterable[str]) -> set[str]:
        """The ids of every step that depends, directly or not, on one of `ids` (not including them)."""
        children: dict[str, list[str]] = {s.id: [] for s in self.steps}
        for s in self.steps:
            for dep in s.depends_on:
                children[dep].append(s.id)
        return self._closure(ids, children)

    def upstream_of(self, ids: Iterable[str]) -> set[str]:
        parents = {s.id: list(s.depends_on) for s in self.steps}
        return self._closure(ids, parents)

    @staticmethod
    def _closure(ids: Iterable[str], edges: dict[str, list[str]]) -> set[str]:
        seen: set[str] = set()
        todo = list(ids)
        while todo:
            for nxt in edges.get(todo.pop(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def subset(self, ids: Iterable[str]) -> Plan:
        """The plan of just these steps; dependencies on steps left out are dropped (those steps are taken as
        done), so the subset runs on its own."""
        keep = set(ids)
        return Plan([Step(s.id, s.kind, s.name, s.inputs, s.outputs, tuple(d for d in s.depends_on if d in keep),
                          s.meta) for s in self.steps if s.id in keep])

    def producer_of(self, dataset: str) -> Step | None:
        """The step that writes a lake table (``silver.orders``), if any."""
        for s in self.steps:
            if any(str(d) == dataset for d in s.outputs):
                return s
        return None

    @staticmethod
    def _topological(steps: list[Step]) -> list[Step]:
        order: list[Step] = []
        state: dict[str, int] = {}
        by_id = {s.id: s for s in steps}

        def visit(s: Step, path: list[str]) -> None:
            if state.get(s.id) == 2:
                return
            if state.get(s.id) == 1:
                cycle = " -> ".join([*path[path.index(s.id):], s.id])
                raise ConfigError(f"plan: the steps depend on each other in a cycle: {cycle}")
            state[s.id] = 1
            for dep in s.depends_on:
                visit(by_id[dep], [*path, s.id])
            state[s.id] = 2
            order.append(s)

        for s in steps:
            visit(s, [])
        return order

    def select(self, items: Iterable[str] | None) -> Plan:
        """The steps that `items` select (all of them when `items` is empty). See :func:`resolve_selector`."""
        given = list(items or [])
        items = [i.strip() for raw in given for i in raw.split(",") if i.strip()]
        if not items:
            if given:  # `-s "$TABLES"` with an empty variable must not run (or --reingest) everything
                raise ConfigError(f"--select {given[0]!r}: an empty selector selects nothing",
                                  hint="leave out --select to run every step, or name a layer, table or step")
            return self
        chosen: set[str] = set()
        for item in items:
            chosen |= self.resolve_selector(item)
        return self.subset(chosen)

    def resolve_selector(self, item: str) -> set[str]:
        """The step ids one selector names.

        A selector is a layer (``bronze``, ``silver``, ``gold``, ``serve``), a step kind (``ingest``,
        ``export``), a step id (``ingest:orders``), a table (``bronze.orders``, ``silver.orders``,
        ``gold.orders_by_day``: the step that writes it), a bare name (every step of that name: a source and its
        silver table, a dbt model) or ``tag:<dbt tag>``; with dbt's graph operators: ``+x`` adds everything
        upstream of x, ``x+`` everything downstream."""
        up, down = item.startswith("+"), item.endswith("+") and len(item) > 1
        core = item[1 if up else 0: -1 if down else None]
        found = self._match(core)
        if not found:
            raise ConfigError(f"--select {item}: no step, table, layer or source of that name",
                              hint="see `airduck plan` for the steps; layers: bronze, silver, gold, serve; "
                                   "graph operators: +name (with upstream), name+ (with downstream)")
        out = set(found)
        if up:
            out |= self.upstream_of(found)
        if down:
            out |= self.downstream_of(found)
        return out

    def _match(self, core: str) -> set[str]:
        if core in self._by_id:
            return {core}
        if core in ("bronze", "silver", "gold", "serve"):
            return {s.id for s in self.steps if s.layer == core}
        if core in ("ingest", "export"):
            return {s.id for s in self.steps if s.kind.value == core}
        if core.startswith("tag:"):
            return {s.id for s in self.steps if core[4:] in (s.get("tags") or ())}
        if "." in core:
            schema, _, name = core.partition(".")
            if schema == "bronze":
                core = f"bronze.{name}"
            step = self.producer_of(core)
            return {step.id} if step else set()
        return {s.id for s in self.steps if s.name == core and s.kind in (StepKind.INGEST, StepKind.SILVER,
                                                                             StepKind.GOLD)}

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}
