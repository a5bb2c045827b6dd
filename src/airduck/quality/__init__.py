"""Quality results: what each check found on a table in a run, whoever ran it.

Silver rules (expectations, casts, required columns, lookups; see airduck.silver.build) and dbt tests
(:mod:`airduck.quality.dbt`, from run_results.json) both produce :class:`QualityResult`; the run records
store them per run (:mod:`airduck.quality.store`) and `airduck quality` lists them.
"""

from airduck.core.quality import Action, CheckKind, QualityResult
from airduck.quality.results import MAX_EXAMPLES, make_result

__all__ = ["MAX_EXAMPLES", "Action", "CheckKind", "QualityResult", "make_result"]
