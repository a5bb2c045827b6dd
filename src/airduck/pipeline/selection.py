"""`--select`: which sources, silver tables and dbt models a run touches."""

from __future__ import annotations

from dataclasses import dataclass, field

from airduck.errors import ConfigError
from airduck.project import ProjectConfig

LAYERS = ("bronze", "silver", "gold", "serve")


@dataclass
class Selection:
    sources: list[str] = field(default_factory=list)
    silver: list[str] = field(default_factory=list)
    gold: bool = False
    dbt_select: list[str] | None = None  # None: all models
    serve: bool = False

    @property
    def empty(self) -> bool:
        return not (self.sources or self.silver or self.gold or self.serve)


def select(config: ProjectConfig, items: list[str] | None) -> Selection:
    """Resolve `--select` items: layer names (bronze, silver, gold, serve), `bronze.x`, `silver.x`,
    a bare name (its source and silver table), or anything else as a dbt selector for gold."""
    has_gold = config.gold.dbt_project is not None
    has_serve = bool(config.serve.postgres or config.serve.export)
    if not items:
        return Selection(list(config.sources), list(config.silver), has_gold, None, has_serve)
    sel = Selection()
    dbt: list[str] = []
    for raw in items:
        for item in (p.strip() for p in raw.split(",")):
            if not item:
                continue
            if item == "bronze":
                sel.sources += list(config.sources)
            elif item == "silver":
                sel.silver += list(config.silver)
            elif item == "gold":
                sel.gold = has_gold
            elif item == "serve":
                sel.serve = has_serve
            elif item.startswith("bronze."):
                _need(item[7:], config.sources, "sources", item)
                sel.sources.append(item[7:])
            elif item.startswith("silver."):
                _need(item[7:], config.silver, "silver", item)
                sel.silver.append(item[7:])
            elif item in config.sources or item in config.silver:
                if item in config.sources:
                    sel.sources.append(item)
                if item in config.silver:
                    sel.silver.append(item)
            elif has_gold:
                dbt.append(item[5:] if item.startswith("gold.") else item)
                sel.gold = True
            else:
                raise ConfigError(f"--select {item}: no source, silver table or layer of that name",
                                  hint=f"layers: {', '.join(LAYERS)}; sources: {', '.join(config.sources) or 'none'}")
    if dbt:
        sel.dbt_select = dbt
    sel.sources = list(dict.fromkeys(sel.sources))
    sel.silver = list(dict.fromkeys(sel.silver))
    return sel


def _need(name: str, known: dict, key: str, item: str) -> None:
    if name not in known:
        raise ConfigError(f"--select {item}: `{key}:` in airduck.yml has no {name!r}",
                          hint=f"known: {', '.join(known) or 'none'}")
