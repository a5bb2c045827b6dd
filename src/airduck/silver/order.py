"""In which order silver tables are built: a table after the silver tables it reads (`from:` or `lookups:`)."""

from __future__ import annotations

from airduck.errors import RuleError
from airduck.silver.config import SilverTable


def silver_ref(text: str) -> str | None:
    """The silver table name in 'silver.<name>' (also 'lake.silver.<name>', quoted parts), else None."""
    parts = [p.strip().strip('"') for p in text.split(".")]
    if len(parts) == 3 and parts[0] == "lake":
        parts = parts[1:]
    if len(parts) == 2 and parts[0] == "silver" and parts[1]:
        return parts[1]
    return None


def dependencies(name: str, rule: SilverTable, known: set[str]) -> list[str]:
    """The silver tables of `known` that `name` reads (its own name excluded: a lookup into itself reads
    the table as it was before this run)."""
    deps: list[str] = []
    for ref in [rule.source, *(lk.table for lk in rule.lookups)]:
        target = silver_ref(ref)
        if target and target in known and target != name and target not in deps:
            deps.append(target)
    return deps


def silver_order(silver: dict[str, SilverTable]) -> list[str]:
    """Every silver table after the ones it depends on; otherwise in the order of airduck.yml.

    Raises RuleError naming the cycle when tables depend on each other.
    """
    known = set(silver)
    deps = {name: dependencies(name, rule, known) for name, rule in silver.items()}
    for name, rule in silver.items():
        if silver_ref(rule.source) == name:
            raise RuleError(f"silver.{name}.from: the table reads itself (from: {rule.source})",
                            hint="read a source (bronze) or another silver table")
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = placed

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name):], name]
            raise RuleError(
                "silver tables depend on each other in a cycle: " + " -> ".join(f"silver.{c}" for c in cycle),
                hint="break the cycle: one of them must read bronze (from:) or drop the lookup",
            )
        state[name] = 1
        for dep in deps[name]:
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in silver:
        visit(name, [])
    return order
