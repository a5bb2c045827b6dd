"""Small helpers for the words of messages (no I/O, importable from every layer)."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None, *, sep: bool = False) -> str:
    """`n` and `word` in the right number: ``plural(1, "row")`` is "1 row", ``plural(2, "row")`` "2 rows".

    `many` is the plural when it is not `word` + "s"; `sep` writes thousands separators (``1,000 rows``).
    """
    count = f"{n:,}" if sep else str(n)
    return f"{count} {word if n == 1 else (many or word + 's')}"
