"""Gold: a normal dbt project builds the marts; airduck runs it with write-audit-publish.

Conventions (what a dbt project under ``gold.dbt_project`` can rely on):

- **No profile to write.** airduck generates ``profiles.yml`` (in ``.airduck/dbt/profile/``) from the
  ``lake:`` settings: dbt-duckdb on an in-memory DuckDB with the DuckLake attached as ``lake``
  (catalog in SQLite or PostgreSQL, data local or on S3). dbt runs with ``--profile airduck``, so
  the ``profile:`` in ``dbt_project.yml`` is ignored. Secrets reach dbt only through ``env_var()``.
- **Sources without boilerplate.** ``models/_airduck_sources.yml`` (in the first ``model-paths``
  folder) is generated and overwritten on every run: source ``silver`` lists every table of the
  ``silver:`` config and every ``silver.*`` table in the lake (``*__quarantine`` tables excluded),
  source ``bronze`` likewise. Write ``{{ source('silver', 'orders') }}``. Do not declare sources
  named ``silver`` or ``bronze`` yourself.
- **Write-audit-publish.** ``dbt build`` (models, seeds, tests, contracts) writes into the staging
  schema ``gold_stage``, never into ``gold``. Only when every model built and no test of severity
  ``error`` failed (nor ``warn``, with ``gold.fail_on_warn``) does airduck copy each built relation
  to ``gold.<alias>`` in ONE lake commit ("publish gold (run <id>)"): readers of ``gold`` see all
  new marts at once or none. A failing test raises ``QualityGateFailed``; a model that does not
  compile or run raises ``DbtError``; ``gold`` is unchanged in both cases.
- **Materialisations.** Gold marts are tables. Models materialised as ``table`` and
  ``incremental`` (the increment is kept in ``gold_stage``) and seeds are published as tables;
  ``view`` models are published as tables holding the view's result at publish time; ``ephemeral``
  models are inlined and not published. Models must not set a custom ``schema``/``database``: they
  would be built outside ``gold_stage`` and are skipped with a warning.
- **Artifacts.** ``manifest.json`` and ``run_results.json`` of each run are kept in the run's
  artifacts folder (``.airduck/runs/<run_id>/dbt/``), with dbt's log and target folder.
- dbt runs in a subprocess with ``threads`` from ``gold.threads`` (1 by default: DuckLake and
  dbt-duckdb are safest without concurrent DDL); packages (``dbt deps``) must already be installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airduck.gold.profile import generated_profile
    from airduck.gold.runner import GOLD, STAGE, GoldResult, build_docs, publish, run_gold
    from airduck.gold.sources import write_sources

# Imported lazily: airduck.project imports airduck.gold.config (and so this package) to load any project, so
# nothing dbt-related may load with it.
_EXPORTS = {
    "generated_profile": "airduck.gold.profile",
    "write_sources": "airduck.gold.sources",
    "GOLD": "airduck.gold.runner",
    "STAGE": "airduck.gold.runner",
    "GoldResult": "airduck.gold.runner",
    "build_docs": "airduck.gold.runner",
    "publish": "airduck.gold.runner",
    "run_gold": "airduck.gold.runner",
}

__all__ = ["GOLD", "STAGE", "GoldResult", "build_docs", "generated_profile", "publish", "run_gold", "write_sources"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
