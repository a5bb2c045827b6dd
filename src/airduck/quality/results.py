"""Building quality results: one place that bounds and redacts their examples."""

from __future__ import annotations

from collections.abc import Iterable

from airduck.config.secrets import redact
from airduck.core.quality import QualityResult

#: failing keys kept per result
MAX_EXAMPLES = 5
#: longest example kept (a row shown as JSON when the table has no key)
MAX_EXAMPLE_CHARS = 200


def clean_examples(values: Iterable[object] | None) -> list[str]:
    """At most MAX_EXAMPLES examples as text, each shortened and with every secret masked."""
    out: list[str] = []
    for value in values or ():
        if len(out) == MAX_EXAMPLES:
            break
        text = "NULL" if value is None else str(value)
        if len(text) > MAX_EXAMPLE_CHARS:
            text = text[:MAX_EXAMPLE_CHARS] + "..."
        out.append(redact(text))
    return out


def make_result(*, table: str, check: str, name: str, rows_checked: int | None, rows_failing: int, action: str,
                passed: bool | None = None, examples: Iterable[object] | None = None, run_id: str | None = None,
                step_id: str | None = None, detail: str | None = None) -> QualityResult:
    """A QualityResult with redacted, bounded examples and detail; `passed` defaults to no failing rows."""
    return QualityResult(
        table=table, check=str(check), name=name, rows_checked=rows_checked, rows_failing=int(rows_failing or 0),
        action=str(action), passed=(not rows_failing) if passed is None else bool(passed),
        examples=clean_examples(examples), run_id=run_id, step_id=step_id,
        detail=redact(detail) if detail else None,
    )
