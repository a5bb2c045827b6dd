"""The dbt project's graph (models, seeds, their dependencies), for the plan.

Read from dbt's own manifest: `dbt parse` runs once per version of the dbt project (its files, the generated
sources file, `gold.vars`) and the reduced graph is cached in `.airduck/dbt/graph.json`, so planning an
unchanged project starts no dbt process.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airduck.config.project import Project
from airduck.errors import DbtError

GRAPH_FILE = "graph.json"
#: materialisations that produce a table in `gold` (ephemeral models are folded into the models that use them)
BUILT = ("table", "view", "incremental", "seed")


@dataclass(frozen=True)
class GoldNode:
    """A dbt model or seed that becomes a gold table."""

    unique_id: str
    name: str
    resource_type: str  # model | seed
    alias: str
    materialized: str
    tags: tuple[str, ...] = ()
    file: str | None = None
    #: lake tables it reads through `source()` (e.g. "silver.orders", "bronze.events")
    sources: tuple[str, ...] = ()
    #: unique ids of the gold nodes it reads through `ref()`
    refs: tuple[str, ...] = ()


@dataclass
class GoldGraph:
    nodes: dict[str, GoldNode] = field(default_factory=dict)  # by unique_id
    digest: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "nodes": [n.__dict__ | {"tags": list(n.tags), "sources": list(n.sources),
                                                              "refs": list(n.refs)} for n in self.nodes.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GoldGraph:
        nodes = {}
        for d in data.get("nodes", []):
            node = GoldNode(**{**d, "tags": tuple(d.get("tags") or ()), "sources": tuple(d.get("sources") or ()),
                               "refs": tuple(d.get("refs") or ())})
            nodes[node.unique_id] = node
        return cls(nodes, data.get("digest", ""))


#: a lake table named in a model's SQL as `silver.x`, `bronze.x` or `gold.x` (models may read lake tables by plain
#: name, as in `airduck sql`, besides source() and ref(); dbt's graph does not see those)
_PLAIN_TABLE = re.compile(r'(?<![\w."])(bronze|silver|gold)\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?', re.IGNORECASE)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/|\{#.*?#\}", re.DOTALL)


def plain_tables(sql: str | None) -> set[str]:
    """Lake tables a model's SQL names directly (comments and Jinja comments left out)."""
    if not sql:
        return set()
    return {f"{s.lower()}.{t}" for s, t in _PLAIN_TABLE.findall(_COMMENTS.sub(" ", sql))}


def graph_from_manifest(manifest: dict[str, Any], digest: str = "") -> GoldGraph:
    """The gold nodes of a dbt manifest, with ephemeral models folded into the nodes that use them."""
    raw = {**manifest.get("nodes", {})}
    sources = manifest.get("sources", {})
    wanted = {uid: n for uid, n in raw.items() if n.get("resource_type") in ("model", "seed")}

    def reads(uid: str, seen: frozenset[str] = frozenset()) -> tuple[set[str], set[str]]:
        """(lake tables via source(), gold node ids via ref()) of node `uid`, looking through ephemerals."""
        tables: set[str] = set()
        refs: set[str] = set()
        for dep in (wanted[uid].get("depends_on") or {}).get("nodes", []):
            if dep in sources:
                s = sources[dep]
                tables.add(f"{s.get('schema') or s.get('source_name')}.{s.get('identifier') or s.get('name')}")
            elif dep in wanted and dep not in seen:
                if _materialized(wanted[dep]) == "ephemeral":
                    t, r = reads(dep, seen | {uid})
                    tables |= t
                    refs |= r
                else:
                    refs.add(dep)
        tables |= plain_tables(wanted[uid].get("raw_code"))
        return tables, refs

    graph = GoldGraph(digest=digest)
    for uid, n in wanted.items():
        mat = _materialized(n)
        if mat not in BUILT:
            continue
        tables, refs = reads(uid)
        own = f"gold.{n.get('alias') or n.get('name')}"
        tables.discard(own)
        graph.nodes[uid] = GoldNode(
            unique_id=uid, name=n.get("name", uid.rsplit(".", 1)[-1]), resource_type=n["resource_type"],
            alias=n.get("alias") or n.get("name"), materialized=mat, tags=tuple(n.get("tags") or ()),
            file=n.get("original_file_path"), sources=tuple(sorted(tables)), refs=tuple(sorted(refs)))
    return graph


def _materialized(node: dict[str, Any]) -> str:
    if node.get("resource_type") == "seed":
        return "seed"
    return str((node.get("config") or {}).get("materialized") or "view")


def _sources_for_parse(project: Project, dbt_dir: Path) -> None:
    """Make sure the generated sources file names every configured bronze/silver table (dbt cannot parse a model
    whose source() is undeclared). Tables it already names (from the lake) are kept, so the file a run writes
    and the one planning needs are the same and dbt's partial parse stays valid."""
    from airduck.gold.sources import SOURCES_FILE, models_dir, sources_document

    path = models_dir(dbt_dir) / SOURCES_FILE
    doc = sources_document(project, None)
    if path.is_file():
        try:
            old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            old = {}
        have = {(s.get("name"), t.get("name")) for s in old.get("sources", []) for t in s.get("tables", [])}
        need = {(s["name"], t["name"]) for s in doc["sources"] for t in s["tables"]}
        if need <= have:
            return
        for s in doc["sources"]:
            names = {t["name"] for t in s["tables"]} | {t for src, t in have if src == s["name"]}
            s["tables"] = [{"name": t} | ({"quoting": {"identifier": True}} if not t.isidentifier() else {})
                           for t in sorted(names)]
    from airduck.gold.sources import HEADER

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".yml.{os.getpid()}.tmp")  # concurrent planners never share a scratch file
    tmp.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    tmp.replace(path)


def load_graph(project: Project) -> GoldGraph:
    """The gold graph of the project's dbt project (cached per version of the project; `dbt parse` otherwise).
    DbtError when dbt cannot parse the project."""
    from airduck.gold.dbt import run_dbt
    from airduck.gold.profile import generated_profile, profile_env
    from airduck.gold.runner import STAGE, _dbt_dir, _dbt_state, fingerprint

    dbt_dir = _dbt_dir(project)
    _sources_for_parse(project, dbt_dir)
    digest = fingerprint(project, dbt_dir, None)
    cache = _dbt_state(project) / GRAPH_FILE
    if cache.is_file():
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            if data.get("digest") == digest:
                return GoldGraph.from_json(data)
        except (ValueError, TypeError, KeyError):
            pass
    state = _dbt_state(project)
    profiles_dir = state / "profile"
    generated_profile(project, profiles_dir, STAGE)
    env = {**project.env, **profile_env(project)}
    args = ["--vars", json.dumps(project.config.gold.vars, default=str)] if project.config.gold.vars else []
    inv = run_dbt(["parse"], project_dir=dbt_dir, profiles_dir=profiles_dir, target_path=state / "parse",
                  log_path=state / "parse" / "logs", env=env, extra_args=args, timeout=project.config.gold.timeout,
                  partial_parse_cache=state / "partial_parse.msgpack")
    manifest = inv.manifest()
    if inv.returncode != 0 or manifest is None:
        raise DbtError(f"dbt cannot parse the gold project: {inv.first_error()}",
                       hint=f"dbt log: {inv.log_path / 'dbt.log'}")
    graph = graph_from_manifest(manifest, digest)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(graph.to_json(), sort_keys=True), encoding="utf-8")
    tmp.replace(cache)
    return graph
